// The console's page: one EventSource for the live view, fetch for searches and actions. Every
// action sends the session's CSRF token (from the page, never stored) in a header; data is put
// into the page with textContent only, so nothing the server relays can run as markup.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  return isNaN(d) ? String(s) : d.toLocaleString();
}

function fmtMs(v) {
  return v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(v < 10 ? 1 : 0) + " ms";
}

async function post(url, headers) {
  const resp = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: Object.assign({ "X-CSRF-Token": csrf }, headers || {}),
  });
  let body = null;
  try { body = await resp.json(); } catch (_) { /* empty or not JSON */ }
  if (!resp.ok) {
    if (resp.status === 401) location.reload();
    const msg = body && (body.message || body.detail || body.title);
    throw new Error(msg || resp.status + " " + resp.statusText);
  }
  return body;
}

async function getJSON(url) {
  const resp = await fetch(url, { credentials: "same-origin" });
  const body = await resp.json().catch(() => null);
  if (!resp.ok) {
    if (resp.status === 401) location.reload();
    throw new Error((body && body.message) || resp.status + " " + resp.statusText);
  }
  return body;
}

// confirmDialog asks a yes/no question in the page's <dialog> and resolves to true on yes.
function confirmDialog(text, yesLabel) {
  const d = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-yes").textContent = yesLabel;
  d.returnValue = "";
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "yes"), { once: true });
    d.showModal();
  });
}

// --- the live view -------------------------------------------------------------------------

// renderShows updates the tier rows in place when the shows and tiers are the same as last time
// (the usual case: only counts move), so that nothing the operator looks at or focuses is
// rebuilt each second; a new show or tier rebuilds the table.
let showsShape = "";
function renderShows(shows) {
  const body = $("shows").tBodies[0];
  shows = shows || [];
  const shape = JSON.stringify(shows.map((s) => [s.id, s.name, (s.tiers || []).map((t) => [t.id, t.name])]));
  if (shape === showsShape) {
    for (const s of shows) {
      for (const t of s.tiers || []) {
        for (const f of ["capacity", "held", "sold", "available"]) {
          const cell = body.querySelector('td[data-show="' + s.id + '"][data-tier="' + t.id + '"][data-field="' + f + '"]');
          if (cell && cell.textContent !== String(t[f])) cell.textContent = t[f];
        }
        const last = $("tier-" + s.id + "-" + t.id).lastElementChild;
        last.replaceChildren(t.available === 0 ? "sold out" : meter(t));
      }
    }
    return;
  }
  showsShape = shape;
  const rows = [];
  for (const s of shows) {
    (s.tiers || []).forEach((t, i) => {
      const cell = (field, v) => el("td", { class: "n", "data-show": s.id, "data-tier": t.id, "data-field": field }, v);
      const cells = [];
      if (i === 0) cells.push(el("th", { scope: "row", rowSpan: s.tiers.length }, s.name, el("br"), el("code", {}, s.id)));
      cells.push(el("td", {}, t.name + " ", el("code", {}, t.id)),
        cell("capacity", t.capacity), cell("held", t.held), cell("sold", t.sold), cell("available", t.available),
        el("td", {}, t.available === 0 ? "sold out" : meter(t)));
      rows.push(el("tr", { id: "tier-" + s.id + "-" + t.id }, ...cells));
    });
  }
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colSpan: 7 }, "No shows yet.")));
  body.replaceChildren(...rows);
}

function meter(t) {
  const m = el("meter", { min: 0, max: t.capacity || 1, value: t.sold + t.held });
  m.setAttribute("aria-label", "taken of " + t.capacity);
  return m;
}

const svgNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// drawChart draws series (arrays of numbers, one per second) as polylines in a 300×80 box with
// a max label; hand-drawn SVG, no library.
function drawChart(id, series, classes, unit) {
  const box = $(id);
  const W = 300, H = 80, pad = 14;
  let max = 0;
  for (const s of series) for (const v of s) max = Math.max(max, v);
  const top = max > 0 ? max * 1.1 : 1;
  const parts = [
    svg("line", { x1: 0, y1: H - 1, x2: W, y2: H - 1, class: "axis" }),
  ];
  series.forEach((s, k) => {
    const n = s.length;
    const pts = s.map((v, i) => {
      const x = n > 1 ? (i * W) / (n - 1) : 0;
      const y = H - 1 - ((H - pad) * v) / top;
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    parts.push(svg("polyline", { points: pts.join(" "), class: classes[k], fill: "none" }));
  });
  const label = svg("text", { x: 2, y: 10, class: "label" });
  label.textContent = "max " + (unit === "ms" ? fmtMs(max) : max + unit);
  parts.push(label);
  box.replaceChildren(...parts);
}

function renderRate(r) {
  $("rate-per-second").textContent = r.per_second.toFixed(2);
  $("rate-orders").textContent = r.orders;
  $("rate-tickets").textContent = r.tickets;
  $("rate-p50").textContent = r.orders ? fmtMs(r.p50_ms) : "–";
  $("rate-p99").textContent = r.orders ? fmtMs(r.p99_ms) : "–";
  const secs = r.seconds || [];
  drawChart("chart-rate", [secs.map((s) => s.orders)], ["rate"], "/s");
  drawChart("chart-latency", [secs.map((s) => s.p50_ms), secs.map((s) => s.p99_ms)], ["p50", "p99"], "ms");
}

function renderRelay(r) {
  if (!r) { $("relay").textContent = "Relay: not shown by this server."; return; }
  // The checkpoint is what the relay knows to be durable in the stream; on the embedded server it
  // trails publishing by a few seconds (two fsync intervals), so a small lag is normal there.
  $("relay").textContent = "Relay: outbox head " + r.head + ", relayed up to " + r.relayed +
    " — lag " + r.lag_events + " events" + (r.lag_events > 0 ? ", oldest waiting " + r.lag_seconds.toFixed(1) + " s" : "") +
    " (on a server that does not relay, the stored checkpoint, which trails publishing by a few seconds)";
}

// renderExpiring rebuilds the rows of the holds about to expire.
function renderExpiring(list) {
  const body = $("expiring").tBodies[0];
  if (!list || list.length === 0) {
    body.replaceChildren(el("tr", {}, el("td", { colSpan: 5 }, "None in the next minute.")));
    return;
  }
  body.replaceChildren(...list.map((h) => el("tr", { id: "expiring-" + h.id, "data-hold": h.id },
    el("th", { scope: "row" }, el("code", {}, h.id)),
    el("td", {}, h.show_id + " / " + h.tier_id),
    el("td", { class: "n" }, String(h.quantity)),
    el("td", {}, h.buyer ? h.buyer.email : ""),
    el("td", {}, fmtTime(h.expires_at)))));
}

// renderConsumers rebuilds the consumers' rows: a handful of rows with nothing to focus, so
// nothing the operator uses is lost. A row's id is its endpoint's (or, for email, its name).
function renderConsumers(list) {
  const body = $("consumers").tBodies[0];
  if (!list) {
    body.replaceChildren(el("tr", {}, el("td", { colSpan: 7 }, "Not shown by this server.")));
    return;
  }
  if (list.length === 0) {
    body.replaceChildren(el("tr", {}, el("td", { colSpan: 7 }, "No consumers yet.")));
    return;
  }
  body.replaceChildren(...list.map((c) => {
    const key = c.endpoint || c.name;
    const who = c.endpoint
      ? el("th", { scope: "row" }, "webhook ", el("code", {}, c.endpoint), c.name ? el("br") : "", c.name ? el("code", { class: "muted" }, c.name) : "")
      : el("th", { scope: "row" }, c.name);
    const num = (field, v) => el("td", { class: "n", "data-field": field }, c.name ? v : "–");
    const state = c.state + (c.disabled_reason ? " (" + c.disabled_reason + ")" : "");
    return el("tr", { id: "consumer-" + key, "data-consumer": key }, who,
      el("td", { "data-field": "state", class: "state-" + c.state }, state),
      num("pending", c.pending), num("ack_pending", c.ack_pending), num("redelivered", c.redelivered),
      num("dead_letters", c.dead_letters),
      el("td", { "data-field": "last_error", class: c.failing ? "err" : "" }, c.last_error || "",
        c.last_error_at ? el("br") : "", c.last_error_at ? el("small", {}, fmtTime(c.last_error_at)) : ""));
  }));
}

// renderDeadLetters keeps the rows of dead letters it already shows (a dead letter does not
// change), so an open payload or a focused Replay button survives the refresh; it adds the new
// ones and drops the ones that left the queue.
const replayedIDs = new Set();
function renderDeadLetters(d) {
  const body = $("dead-letters").tBodies[0];
  if (!d) {
    body.replaceChildren();
    $("dlq-count").textContent = "(no async side on this server)";
    return;
  }
  // A snapshot built before a replay finished may still list it: do not bring its row back.
  const items = (d.items || []).filter((dl) => !replayedIDs.has(dl.id));
  $("dlq-count").textContent = "(" + items.length + (d.more ? "+" : "") + ")";
  $("dlq-empty").hidden = items.length > 0;
  const keep = new Set(items.map((dl) => "dl-" + dl.id));
  for (const row of [...body.rows]) if (!keep.has(row.id)) row.remove();
  let prev = null;
  for (const dl of items) {
    let row = $("dl-" + dl.id);
    if (!row) row = deadLetterRow(dl);
    const want = prev ? prev.nextElementSibling : body.firstElementChild;
    if (want !== row) body.insertBefore(row, want);
    prev = row;
  }
}

function deadLetterRow(dl) {
  const btn = el("button", { type: "button", class: "replay", "data-id": dl.id }, "Replay");
  btn.setAttribute("aria-label", "Replay dead letter " + dl.id);
  btn.addEventListener("click", () => replay(dl.id, btn));
  let payload = "";
  try { payload = JSON.stringify(dl.payload, null, 2); } catch (_) { payload = String(dl.payload); }
  return el("tr", { id: "dl-" + dl.id, "data-id": dl.id },
    el("td", {}, dl.id), el("td", {}, el("code", {}, dl.consumer)),
    el("td", {}, dl.event_type, el("br"), el("code", {}, dl.event_id)),
    el("td", { class: "n" }, dl.attempts), el("td", {}, fmtTime(dl.failed_at)),
    el("td", { class: "err" }, dl.error),
    el("td", {}, el("details", {}, el("summary", {}, "payload"), el("pre", {}, payload))),
    el("td", {}, btn));
}

async function replay(id, btn) {
  btn.disabled = true;
  $("dlq-message").textContent = "Replaying " + id + "…";
  try {
    await post("/console/api/dead-letters/" + encodeURIComponent(id) + "/replay");
    $("dlq-message").textContent = "Dead letter " + id + " replayed.";
    replayedIDs.add(id);
    const row = $("dl-" + id);
    if (row) row.remove();
  } catch (e) {
    $("dlq-message").textContent = "Replay of " + id + " failed: " + e.message;
    btn.disabled = false;
  }
}

// renderOrderCounts fills the orders-by-status cells; a count at the cap is a lower bound.
function renderOrderCounts(o) {
  for (const cell of $("order-counts").querySelectorAll("td[data-status]")) {
    const n = o && o.by_status ? o.by_status[cell.dataset.status] : undefined;
    const text = n === undefined ? "–" : n.toLocaleString("en") + (n >= o.cap ? "+" : "");
    if (cell.textContent !== text) cell.textContent = text;
  }
}

// renderRooms shows the waiting rooms, when the server has them: their counts move each second
// while a queue drains. Rows are kept and their cells updated in place, so that a pause button
// the operator is on is not rebuilt under them each second.
function renderRooms(rooms) {
  $("rooms-section").hidden = !rooms;
  if (!rooms) return;
  const body = $("rooms").tBodies[0];
  if (rooms.length === 0) {
    body.replaceChildren(el("tr", {}, el("td", { colSpan: 7 }, "No show has a waiting room.")));
    return;
  }
  const keep = new Set(rooms.map((r) => r.show_id));
  for (const row of [...body.rows]) if (!keep.has(row.dataset.show)) row.remove();
  let prev = null;
  for (const r of rooms) {
    const row = roomRow(body, r.show_id);
    updateRoom(row, r);
    const want = prev ? prev.nextElementSibling : body.firstElementChild;
    if (want !== row) body.insertBefore(row, want);
    prev = row;
  }
}

// roomRow is the show's row of the rooms table, made empty when it has none yet.
function roomRow(body, showID) {
  for (const row of body.rows) if (row.dataset.show === showID) return row;
  const btn = el("button", { type: "button", class: "pause" });
  btn.addEventListener("click", () => pauseRoom(showID, btn.dataset.action === "pause", btn));
  const cell = (field, cls) => el("td", Object.assign({ "data-field": field }, cls ? { class: cls } : {}));
  return el("tr", { "data-show": showID }, el("th", { scope: "row" }, showID), cell("opens"), cell("admission"),
    cell("waiting", "n"), cell("admitted", "n"), cell("state"), el("td", {}, btn));
}

function updateRoom(row, r) {
  const set = (field, text) => {
    const c = row.querySelector('[data-field="' + field + '"]');
    if (c.textContent !== text) c.textContent = text;
  };
  set("opens", fmtTime(r.opens_at));
  set("admission", r.admission === "auto"
    ? "auto, ≤ " + r.admit_per_second + "/s, +" + r.auto_margin_percent + "%"
    : r.admit_per_second + "/s");
  set("waiting", r.waiting.toLocaleString("en"));
  set("admitted", r.admitted.toLocaleString("en"));
  set("state", r.paused ? "paused" : "admitting");
  row.classList.toggle("paused", r.paused);
  const btn = row.querySelector("button.pause");
  const action = r.paused ? "resume" : "pause";
  if (btn.dataset.action !== action) {
    btn.dataset.action = action;
    btn.textContent = r.paused ? "Resume…" : "Pause…";
    btn.classList.toggle("danger", !r.paused);
    btn.setAttribute("aria-label", (r.paused ? "Resume" : "Pause") + " the waiting room of " + r.show_id);
  }
}

// pauseRoom stops the show's queue from letting buyers through, or starts it again, after the
// operator confirms: both change what thousands of buyers see.
async function pauseRoom(showID, pause, btn) {
  const yes = await confirmDialog(pause
    ? "Pause the waiting room of " + showID + "? Nobody is let through until you resume it; the queue keeps every place, and buyers already let through keep their turn."
    : "Resume the waiting room of " + showID + "? It lets the queue through at its rate again.",
  pause ? "Pause" : "Resume");
  if (!yes) return;
  btn.disabled = true;
  try {
    const room = await post("/console/api/waiting-rooms/" + encodeURIComponent(showID) + (pause ? "/pause" : "/resume"));
    const row = btn.closest("tr");
    if (row && room) updateRoom(row, room);
    $("rooms-message").textContent = "The waiting room of " + showID + (pause ? " is paused." : " admits again.");
  } catch (e) {
    $("rooms-message").textContent = (pause ? "Pause" : "Resume") + " of " + showID + " failed: " + e.message;
  } finally {
    btn.disabled = false;
  }
}

function render(state) {
  renderShows(state.shows);
  renderExpiring(state.expiring_holds);
  renderRooms(state.wait_rooms);
  renderOrderCounts(state.orders);
  renderRate(state.rate);
  renderRelay(state.relay);
  renderConsumers(state.consumers);
  renderDeadLetters(state.dead_letters);
  if (state.cluster) {
    $("cluster-section").hidden = false;
    $("cluster").textContent = JSON.stringify(state.cluster, null, 2);
  }
  $("errors").textContent = (state.errors || []).join("; ");
  $("live").textContent = "live · updated " + new Date(state.at).toLocaleTimeString();
  document.body.dataset.updated = state.at;
}

function connect() {
  const es = new EventSource("/console/api/stream");
  es.addEventListener("state", (ev) => render(JSON.parse(ev.data)));
  es.addEventListener("signedout", () => { es.close(); location.reload(); });
  es.onerror = async () => {
    $("live").textContent = "reconnecting…";
    if (es.readyState === EventSource.CLOSED) {
      // A refused stream (401 after the session ended) is not retried by the browser: ask why.
      try { await getJSON("/console/api/state"); setTimeout(connect, 2000); } catch (_) { /* reloads on 401 */ }
    }
  };
}

// --- orders --------------------------------------------------------------------------------

function renderOrders(res) {
  const body = $("orders").tBodies[0];
  const orders = res.orders || [];
  $("orders-message").textContent = orders.length + " order(s)" +
    (res.scanned > 1 ? " among " + res.scanned + " searched" : "") + (res.truncated ? " (search stopped early; more may match)" : "");
  body.replaceChildren(...orders.map((o) => {
    const action = el("td", {});
    if (o.status === "confirmed") {
      const b = el("button", { type: "button", class: "cancel danger", "data-id": o.id }, "Cancel…");
      b.setAttribute("aria-label", "Cancel order " + o.id);
      b.addEventListener("click", () => cancelOrder(o, b));
      action.append(b);
    }
    return el("tr", { id: "order-" + o.id },
      el("td", {}, el("code", {}, o.id)), el("td", { "data-field": "status" }, o.status),
      el("td", {}, o.show_id + " / " + o.tier_id), el("td", { class: "n" }, o.quantity),
      el("td", {}, o.buyer && o.buyer.email), el("td", {}, fmtTime(o.created_at)), action);
  }));
}

async function search(q) {
  $("orders-message").textContent = "Searching…";
  try {
    renderOrders(await getJSON("/console/api/orders?q=" + encodeURIComponent(q)));
  } catch (e) {
    $("orders-message").textContent = "Search failed: " + e.message;
  }
}

async function cancelOrder(o, btn) {
  const yes = await confirmDialog("Cancel order " + o.id + " (" + o.quantity + " ticket(s) for " +
    (o.buyer && o.buyer.email) + ") and refund it?", "Cancel and refund");
  if (!yes) return;
  // One key for this confirmation: a retry of it cancels and refunds once.
  const key = "console-" + crypto.randomUUID();
  btn.disabled = true;
  try {
    const res = await post("/console/api/orders/" + encodeURIComponent(o.id) + "/cancel", { "Idempotency-Key": key });
    $("orders-message").textContent = "Order " + o.id + " is " + res.status + ".";
    renderOrders({ orders: [res], scanned: 1 });
  } catch (e) {
    $("orders-message").textContent = "Cancel of " + o.id + " failed: " + e.message;
    btn.disabled = false;
  }
}

// --- API keys ------------------------------------------------------------------------------

async function loadKeys() {
  try {
    const res = await getJSON("/console/api/keys");
    const keys = res.keys || [];
    $("keys-message").textContent = keys.length + " stored key(s); the configured admin key is not listed.";
    $("keys").tBodies[0].replaceChildren(...keys.map((k) => {
      const action = el("td", {});
      if (!k.revoked_at) {
        const b = el("button", { type: "button", class: "revoke danger", "data-id": k.id }, "Revoke…");
        b.setAttribute("aria-label", "Revoke key " + k.id);
        b.addEventListener("click", async () => {
          if (!(await confirmDialog("Revoke key " + k.id + (k.label ? " (" + k.label + ")" : "") +
            "? Requests with it fail from now on.", "Revoke"))) return;
          try {
            await post("/console/api/keys/" + encodeURIComponent(k.id) + "/revoke");
            loadKeys();
          } catch (e) { $("keys-message").textContent = "Revoke failed: " + e.message; }
        });
        action.append(b);
      }
      return el("tr", { id: "key-" + k.id }, el("td", {}, el("code", {}, k.id)), el("td", {}, k.role),
        el("td", {}, k.label || ""), el("td", {}, fmtTime(k.created_at)), el("td", {}, fmtTime(k.last_used_at)),
        el("td", {}, fmtTime(k.revoked_at)), action);
    }));
  } catch (e) {
    $("keys-message").textContent = "Keys could not be read: " + e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("order-search").addEventListener("submit", (ev) => { ev.preventDefault(); search($("order-q").value.trim()); });
  connect();
  loadKeys();
});
