// The buyer's page: sign in with an email, wait in the queue, choose seats or a quantity, hold,
// pay with a test token, see the tickets. Every request goes to this page's own server
// (/shop/{show}/api/…), which holds no secret of the browser's but its cookies; every action
// carries an Idempotency-Key made for the click, and a retry of that click sends the same key,
// so a lost answer never holds or charges twice.
"use strict";
(() => {
  const showID = document.body.dataset.show;
  const api = "/shop/" + encodeURIComponent(showID) + "/api";
  const $ = (id) => document.getElementById(id);
  const holdKey = "boxoffice-shop-hold:" + showID;

  const st = {
    show: null,
    buyer: null,
    waitingRoom: false,
    admissionEnds: null, // Date: when the queue's admission runs out
    tier: null, // the chosen tier
    seats: [], // the seat map of the show
    seatsETag: "",
    saleReady: false, // the choosing part is wired and polling
    selected: new Set(),
    justTaken: new Set(), // seats refused to us a moment ago, shown taken until the map says so
    hold: null,
    busy: false,
  };
  const timers = {};

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // What a waiting ticket says when the queue cannot move for now.
  const PAUSED = "The queue is paused for now; you keep your place.";
  const SOLD_OUT = "Every ticket is sold or held right now. Held tickets that are not bought come back, so you keep your place.";

  // clockSkew is how far the server's clock is ahead of this computer's, in ms. Every time the
  // page counts (a hold's minutes, a turn in the queue) is the server's, and the server alone
  // decides when a hold ends: a computer set wrong must neither drop a hold the server still
  // keeps nor promise minutes that are gone.
  let clockSkew = 0;

  // noteServerDate learns the skew from an answer's Date header. The header says whole seconds,
  // so the middle of its second is taken; a computer within two seconds of the server is left
  // alone, as that is about the header's own rounding and the answer's way here.
  function noteServerDate(header) {
    const at = Date.parse(header || "");
    if (isNaN(at)) return;
    const skew = at + 500 - Date.now();
    clockSkew = Math.abs(skew) < 2000 ? 0 : skew;
  }

  function serverNow() { return new Date(Date.now() + clockSkew); }

  // newKey is the Idempotency-Key of one user action: random, made once per click.
  function newKey() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = new Uint8Array(16);
    crypto.getRandomValues(b); // also where randomUUID is not (plain HTTP on another host)
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  // call sends one request and reads its JSON answer. A network failure, or the server saying
  // the same key is still in progress, is retried with the same key: the server does it once.
  async function call(method, path, body, key) {
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (key) headers["Idempotency-Key"] = key;
    for (let attempt = 0; ; attempt++) {
      let r;
      try {
        r = await fetch(api + path, { method, headers, credentials: "same-origin",
          body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (e) {
        if (attempt >= 3 || (method !== "GET" && !key)) throw e;
        await sleep(400 * (attempt + 1));
        continue;
      }
      noteServerDate(r.headers.get("Date"));
      const text = await r.text();
      let data = null;
      if (text) {
        try { data = JSON.parse(text); } catch (_) { data = null; }
      }
      if (r.status === 409 && data && data.code === "idempotency_request_in_progress" && attempt < 10) {
        await sleep(1000);
        continue;
      }
      return { status: r.status, data, etag: r.headers.get("ETag") };
    }
  }

  function show(id, on) { $(id).hidden = !on; }

  function say(text, kind) {
    const m = $("message");
    m.textContent = text;
    m.className = "message" + (kind === "info" ? " info" : "");
    m.hidden = !text;
  }

  // problem is a human sentence for a refusal, by its code.
  function problem(res) {
    const d = res.data || {};
    switch (d.code) {
      case "sold_out": return "Sold out: only " + (d.available ?? 0) + " left of these tickets.";
      case "buyer_limit": return "You have reached the limit of tickets one buyer may have for this show.";
      case "not_admitted": return "The queue has not let you through yet, or your turn ran out.";
      case "hold_expired": return "Your hold ran out, and the tickets went back on sale.";
      case "hold_released": return "You gave these tickets back.";
      case "payment_declined": return "The payment was declined. Try another card.";
      case "overloaded": case "rate_limited": return "The sale is very busy right now; try again in a moment.";
      case "unauthorized": return "Please enter your email again.";
    }
    return d.detail || d.message || "Something went wrong (" + res.status + "); try again.";
  }

  function fmtMoney(m) { return (m.amount / 100).toFixed(2) + " " + m.currency; }

  function fmtLeft(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  // --- start ---------------------------------------------------------------------------------

  async function start() {
    const res = await call("GET", "/state");
    if (res.status !== 200) { say(problem(res)); return; }
    applyState(res.data);
    if (!st.buyer) {
      show("signin", true);
      $("email").focus();
      return;
    }
    signedIn();
  }

  function applyState(s) {
    st.show = s.show;
    st.buyer = s.buyer;
    st.waitingRoom = s.waiting_room;
    for (const t of s.show.tiers) {
      const el = document.querySelector('.avail[data-tier="' + CSS.escape(t.id) + '"]');
      if (el) el.textContent = t.available;
    }
  }

  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const email = $("email").value.trim();
    const res = await call("POST", "/session", { email });
    if (res.status === 202 && res.data && res.data.code_sent) {
      // The address is proven by the code sent to it (without a mailer the server signs in at once).
      say("");
      $("code-email").textContent = res.data.buyer;
      $("code-input").value = "";
      show("signin", false);
      show("code", true);
      $("code-input").focus();
      return;
    }
    if (res.status !== 200) { say(signInProblem(res, "Please enter a valid email address.")); return; }
    say("");
    st.buyer = res.data.buyer;
    show("signin", false);
    signedIn();
  });

  $("code-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const res = await call("POST", "/session/code", { code: $("code-input").value });
    if (res.status !== 200) { say(signInProblem(res, "That is not the code we sent.")); return; }
    say("");
    st.buyer = res.data.buyer;
    show("code", false);
    signedIn();
  });

  $("code-again").addEventListener("click", () => {
    say("");
    show("code", false);
    show("signin", true);
    $("email").focus();
  });

  // signInProblem is a sentence for a refused sign-in step: the field's own message when the
  // server names one (a code that ran out, or was mistyped too often), else fallback or the code's.
  function signInProblem(res, fallback) {
    const d = res.data || {};
    if (d.code === "validation_failed") {
      const e = (d.errors || [])[0];
      if (e && e.field === "code") return "The code " + e.message + ".";
      return fallback;
    }
    if (d.code === "rate_limited") return d.detail || "Too many codes were sent to this address; use the last one.";
    return problem(res);
  }

  $("signout").addEventListener("click", async () => {
    await call("POST", "/signout", {});
    sessionStorage.removeItem(holdKey);
    location.reload();
  });

  function signedIn() {
    $("buyer-email").textContent = st.buyer;
    show("buyer", true);
    if (st.waitingRoom) {
      show("queue", true);
      pollQueue(true);
    } else {
      openSale();
    }
  }

  // --- waiting room --------------------------------------------------------------------------

  async function pollQueue(first) {
    clearTimeout(timers.queue);
    let res = await call("GET", "/queue");
    if (res.status === 404 && first) res = await call("POST", "/queue", {});
    if (res.status !== 200) {
      // The room may have gone (the show sells to anyone again): ask before trying again.
      const s = await call("GET", "/state");
      if (s.status === 200) {
        applyState(s.data);
        if (!st.waitingRoom) { show("queue", false); openSale(); return; }
      }
      $("queue-status").textContent = problem(res);
      timers.queue = setTimeout(() => pollQueue(true), 3000);
      return;
    }
    const t = res.data;
    const q = $("queue-status");
    q.dataset.status = t.status;
    if (t.status === "admitted") {
      st.admissionEnds = new Date(t.admission_expires_at);
      q.textContent = "It is your turn.";
      show("queue", false);
      openSale();
      return;
    }
    if (t.status === "expired") {
      q.textContent = "Your turn came and ran out before you held tickets. Your place in this queue is used.";
      say("Your turn in the queue ran out.");
      return;
    }
    if (t.position != null) {
      q.replaceChildren("You are number ");
      const b = document.createElement("strong");
      b.id = "queue-position";
      b.textContent = t.position;
      q.append(b, " in the queue");
      // Paused or sold out, the estimate counts from a moment nobody can date: it would only mislead.
      if (t.estimated_wait_seconds != null && !t.paused && !t.sold_out) q.append(" (about " + fmtLeft(t.estimated_wait_seconds * 1000) + " min)");
      q.append(".");
      if (t.paused) q.append(" " + PAUSED);
      if (t.sold_out) q.append(" " + SOLD_OUT);
    } else if (t.paused || t.sold_out) {
      q.textContent = [t.paused ? PAUSED : "", t.sold_out ? SOLD_OUT : ""].filter(Boolean).join(" ");
    } else {
      const opens = new Date(t.opens_at);
      q.textContent = opens > serverNow()
        ? "The sale opens at " + opens.toLocaleTimeString() + ". Everyone who joins before then gets a place drawn at random."
        : "You are in the queue; your place is being worked out.";
    }
    // The ticket says when to ask again: each second near the front, less often far back in a
    // long queue (a stadium's crowd would otherwise read its tickets a million times a second).
    timers.queue = setTimeout(() => pollQueue(false), 1000 * Math.max(1, t.poll_after_seconds || 1));
  }

  // admissionTick shows how long the queue's admission lasts; once it is over, holds are refused.
  function admissionTick() {
    clearTimeout(timers.admission);
    if (!st.admissionEnds || st.hold) { $("admission").textContent = ""; return; }
    const left = st.admissionEnds - serverNow();
    if (left <= 0) {
      $("admission").textContent = "Your turn has run out.";
      return;
    }
    $("admission").textContent = "Your turn lasts " + fmtLeft(left) + " more: hold tickets before then.";
    timers.admission = setTimeout(admissionTick, 1000);
  }

  // --- choosing ------------------------------------------------------------------------------

  // openSale shows the choosing part; the first time, it also wires it and starts its polls (a
  // buyer sent back to the queue and let through again comes here twice).
  function openSale() {
    show("sale", true);
    admissionTick();
    if (st.saleReady) {
      if (st.tier && st.tier.seated) loadSeats(true);
      return;
    }
    st.saleReady = true;
    const radios = document.querySelectorAll('input[name="tier"]');
    let pick = null;
    for (const r of radios) {
      r.addEventListener("change", () => chooseTier(r.value));
      const t = st.show.tiers.find((x) => x.id === r.value);
      if (!pick && t && t.available > 0) pick = r;
    }
    pick = pick || radios[0];
    if (pick) { pick.checked = true; chooseTier(pick.value); }
    pollState();
    resumeHold();
  }

  function chooseTier(id) {
    st.tier = st.show.tiers.find((t) => t.id === id) || null;
    st.selected.clear();
    const seated = !!(st.tier && st.tier.seated);
    show("seated", seated);
    $("hold-best").textContent = seated ? "Hold best available" : "Hold tickets";
    $("quantity-label").textContent = seated ? "Or the best available, how many:" : "Number of tickets";
    if (seated) loadSeats(true); else clearTimeout(timers.seats);
    renderSelection();
  }

  async function pollState() {
    clearTimeout(timers.state);
    const res = await call("GET", "/state");
    if (res.status === 200) applyState(res.data);
    timers.state = setTimeout(pollState, 3000);
  }

  // loadSeats reads the seat map (a 304 when it has not changed) and draws it; it polls on its
  // own while a seated tier is chosen, so seats others take go grey without a reload.
  async function loadSeats(force) {
    clearTimeout(timers.seats);
    const headers = {};
    if (!force && st.seatsETag) headers["If-None-Match"] = st.seatsETag;
    try {
      const r = await fetch(api + "/seats", { headers, credentials: "same-origin" });
      noteServerDate(r.headers.get("Date"));
      if (r.status === 200) {
        const m = await r.json();
        st.seats = m.seats;
        st.seatsETag = r.headers.get("ETag") || "";
        drawMap();
      }
    } catch (_) { /* the next poll tries again */ }
    if (st.tier && st.tier.seated) timers.seats = setTimeout(() => loadSeats(false), 1500);
  }

  function seatName(s) { return "Section " + s.section + ", row " + s.row + ", seat " + s.label; }

  // The map's buttons by seat id, and the seats they were built for: a redraw of the same seats
  // (every poll draws, and a forced one every few seconds) repaints the buttons in place. Built
  // anew each time, a button replaced between the buyer's mousedown and mouseup got no click,
  // and focus left the map.
  let mapKey = "";
  const seatButtons = new Map();

  function drawMap() {
    const map = $("seatmap");
    if (!st.tier || !st.tier.seated) { map.replaceChildren(); mapKey = ""; seatButtons.clear(); return; }
    const sections = new Map();
    const lost = [];
    for (const s of st.seats) {
      if (s.tier_id !== st.tier.id) continue;
      if (!sections.has(s.section)) sections.set(s.section, new Map());
      const rows = sections.get(s.section);
      if (!rows.has(s.row)) rows.set(s.row, []);
      rows.get(s.row).push(s);
      if (s.state !== "available") {
        if (st.selected.delete(s.id)) lost.push(s.id); // someone else has it now
        st.justTaken.delete(s.id); // the map knows: no need to say it any more
      }
    }
    if (lost.length) {
      say((lost.length === 1 ? "Seat " + lost[0] + " was" : "Seats " + lost.join(", ") + " were") +
        " just taken by another buyer: choose another seat.");
    }
    const mine = st.seats.filter((s) => s.tier_id === st.tier.id);
    const key = st.tier.id + "|" + mine.map((s) => s.id).join(",");
    if (key === mapKey) {
      for (const s of mine) paintSeat(seatButtons.get(s.id), s);
      renderSelection();
      return;
    }
    seatButtons.clear();
    const out = [];
    for (const [sec, rows] of sections) {
      const box = document.createElement("div");
      box.className = "map-section";
      const h = document.createElement("h4");
      h.textContent = "Section " + sec;
      box.append(h);
      for (const [row, seats] of rows) {
        const line = document.createElement("div");
        line.className = "map-row";
        line.setAttribute("role", "group");
        line.setAttribute("aria-label", "Section " + sec + ", row " + row);
        const lab = document.createElement("span");
        lab.className = "row-label";
        lab.textContent = "Row " + row;
        lab.setAttribute("aria-hidden", "true");
        line.append(lab);
        for (const s of seats) line.append(seatButton(s));
        box.append(line);
      }
      out.push(box);
    }
    map.replaceChildren(...out);
    mapKey = key;
    renderSelection();
  }

  // seatButton makes the button of seat s; paintSeat shows its state.
  function seatButton(s) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.seat = s.id;
    b.textContent = s.label;
    b.addEventListener("click", () => {
      if (st.selected.has(s.id)) st.selected.delete(s.id);
      else if (st.selected.size < 10) st.selected.add(s.id);
      b.setAttribute("aria-pressed", String(st.selected.has(s.id)));
      renderSelection();
    });
    paintSeat(b, s);
    seatButtons.set(s.id, b);
    return b;
  }

  function paintSeat(b, s) {
    b.className = "seat" + (s.accessible ? " accessible" : "") + (s.restricted_view ? " restricted" : "");
    const taken = st.justTaken.has(s.id) && s.state === "available";
    b.dataset.state = taken ? "taken" : s.state;
    const free = s.state === "available" && !taken;
    b.disabled = !free;
    b.setAttribute("aria-pressed", String(st.selected.has(s.id)));
    let label = seatName(s);
    if (s.accessible) label += ", wheelchair accessible";
    if (s.restricted_view) label += ", restricted view";
    if (!free) label += ", taken";
    b.setAttribute("aria-label", label);
    b.title = label;
  }

  function renderSelection() {
    const ids = [...st.selected];
    $("selection").textContent = ids.length ? "Chosen: " + ids.join(", ") + "." : "No seats chosen.";
    $("hold-selected").disabled = ids.length === 0 || st.busy || !!st.hold;
  }

  // --- holding -------------------------------------------------------------------------------

  $("hold-selected").addEventListener("click", () => {
    const seats = [...st.selected];
    if (seats.length) hold({ tier_id: st.tier.id, seats });
  });

  $("hold-best").addEventListener("click", () => {
    const n = parseInt($("quantity").value, 10);
    if (!(n >= 1 && n <= 10)) { say("Choose 1 to 10 tickets."); return; }
    hold({ tier_id: st.tier.id, quantity: n });
  });

  async function hold(body) {
    if (st.busy || st.hold || !st.tier) return;
    st.busy = true;
    renderSelection();
    say("");
    const key = newKey(); // one click, one key: a retry below is the same hold
    let res;
    try {
      res = await call("POST", "/holds", body, key);
    } catch (_) {
      res = { status: 0, data: { detail: "The server could not be reached; check the connection and try again." } };
    }
    st.busy = false;
    if (res.status === 201) {
      setHold(res.data);
      st.selected.clear();
      if (st.tier.seated) loadSeats(true);
      return;
    }
    const code = res.data && res.data.code;
    if (code === "seat_unavailable") {
      const seats = body.seats || [];
      for (const id of seats) { st.selected.delete(id); st.justTaken.add(id); }
      say((seats.length === 1 ? "Seat " + seats[0] + " was" : "One of seats " + seats.join(", ") + " was") +
        " just taken by another buyer. The map is up to date again: choose another seat.");
      drawMap();
      loadSeats(true);
      return;
    }
    say(problem(res));
    if (code === "not_admitted" && st.waitingRoom) {
      show("sale", false);
      show("queue", true);
      pollQueue(true);
      return;
    }
    if (code === "sold_out" && st.tier.seated) loadSeats(true);
    renderSelection();
  }

  function setHold(h) {
    st.hold = h;
    sessionStorage.setItem(holdKey, h.id);
    show("sale", false);
    show("order", false);
    show("hold", true);
    const tier = st.show.tiers.find((t) => t.id === h.tier_id);
    const sum = $("hold-summary");
    sum.replaceChildren();
    sum.append(h.quantity + " × " + (tier ? tier.name : h.tier_id));
    if (tier) sum.append(" at " + fmtMoney(tier.price) + " each");
    if (h.seats && h.seats.length) {
      sum.append(": seats ");
      const s = document.createElement("strong");
      s.id = "hold-seats";
      s.textContent = h.seats.join(", ");
      sum.append(s);
    }
    sum.append(".");
    $("pay").disabled = false;
    $("release").disabled = false;
    holdTick();
    $("pay").focus();
  }

  function holdTick() {
    clearTimeout(timers.hold);
    if (!st.hold) return;
    const left = new Date(st.hold.expires_at) - serverNow();
    $("hold-countdown").textContent = fmtLeft(left);
    if (left <= 0) {
      say("Your hold ran out, and the tickets went back on sale.");
      endHold();
      return;
    }
    timers.hold = setTimeout(holdTick, 1000);
    if (!timers.holdCheck) timers.holdCheck = setTimeout(checkHold, holdCheckMs);
  }

  // holdCheckMs is how often the page asks the server about the hold it shows: the server may end
  // it before the countdown does (its clock, another window's release or payment), and the buyer
  // should hear so then, not only when they press Pay. Tests shorten it, or stretch it to see Pay
  // meet a hold the page still shows.
  const holdCheckMs = window.boxofficeShopHoldCheckMs || 5000;

  async function checkHold() {
    timers.holdCheck = null;
    const h = st.hold;
    if (!h) return;
    if (st.busy) { // paying: the payment's answer says what became of the hold
      timers.holdCheck = setTimeout(checkHold, holdCheckMs);
      return;
    }
    let res;
    try {
      res = await call("GET", "/holds/" + encodeURIComponent(h.id));
    } catch (_) {
      res = { status: 0 };
    }
    if (st.hold !== h || st.busy) {
      if (st.hold) timers.holdCheck = setTimeout(checkHold, holdCheckMs);
      return;
    }
    const status = res.status === 200 ? res.data.status : res.status === 404 ? "gone" : "active";
    if (status === "active") {
      timers.holdCheck = setTimeout(checkHold, holdCheckMs);
      return;
    }
    say({
      expired: "Your hold ran out, and the tickets went back on sale.",
      released: "Your hold was released, and the tickets went back on sale.",
      confirmed: "This hold was paid for in another window: its tickets are in that window's order.",
    }[status] || "Your hold is no longer there; choose again.", status === "confirmed" ? "info" : undefined);
    endHold();
  }

  function endHold() {
    st.hold = null;
    sessionStorage.removeItem(holdKey);
    clearTimeout(timers.hold);
    clearTimeout(timers.holdCheck);
    timers.holdCheck = null;
    show("hold", false);
    show("sale", true);
    admissionTick();
    if (st.tier && st.tier.seated) loadSeats(true);
    renderSelection();
  }

  // resumeHold finds the hold this tab made before a reload, if it is still active.
  async function resumeHold() {
    const id = sessionStorage.getItem(holdKey);
    if (!id) return;
    const res = await call("GET", "/holds/" + encodeURIComponent(id));
    if (res.status === 200 && res.data.status === "active") setHold(res.data);
    else sessionStorage.removeItem(holdKey);
  }

  $("release").addEventListener("click", async () => {
    if (!st.hold) return;
    $("release").disabled = true;
    const res = await call("POST", "/holds/" + encodeURIComponent(st.hold.id) + "/release", {});
    if (res.status !== 204) { say(problem(res)); $("release").disabled = false; return; }
    say("The tickets are back on sale.", "info");
    endHold();
  });

  // --- paying --------------------------------------------------------------------------------

  $("pay-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!st.hold || st.busy) return;
    st.busy = true;
    $("pay").disabled = true;
    say("Paying…", "info");
    const key = newKey(); // one click, one charge, however often it is retried
    let res;
    try {
      res = await call("POST", "/holds/" + encodeURIComponent(st.hold.id) + "/confirm", { token: $("pay-token").value }, key);
    } catch (_) {
      res = { status: 0, data: { detail: "The server could not be reached. Press Pay again: you will not be charged twice." } };
    }
    st.busy = false;
    if (res.status === 201 || res.status === 202) {
      say("");
      paid(res.data);
      return;
    }
    say(problem(res));
    const code = res.data && res.data.code;
    if (code === "hold_expired" || code === "hold_released") { endHold(); return; }
    $("pay").disabled = false;
  });

  function paid(order) {
    clearTimeout(timers.hold);
    clearTimeout(timers.holdCheck);
    timers.holdCheck = null;
    st.hold = null;
    sessionStorage.removeItem(holdKey);
    show("hold", false);
    show("order", true);
    showOrder(order);
  }

  async function showOrder(o) {
    clearTimeout(timers.order);
    const status = $("order-status");
    const changed = status.dataset.status !== o.status;
    status.dataset.status = o.status;
    const list = $("tickets");
    list.replaceChildren();
    switch (o.status) {
      case "confirmed":
        status.textContent = "Paid: order " + o.id + ", " + fmtMoney(o.amount) + ". A receipt goes to " + o.buyer.email + ".";
        for (const t of o.tickets) {
          const li = document.createElement("li");
          li.textContent = t.code;
          if (t.seat) {
            li.dataset.seat = t.seat;
            const s = document.createElement("span");
            s.className = "seat-name";
            s.textContent = "seat " + t.seat;
            li.append(s);
          }
          list.append(li);
        }
        break;
      case "pending_payment":
        // The server settles it by itself (the payment outlives the request that answered 202):
        // the page only reads the order until it is final. A failed read (the network, a busy
        // server) is read again, so the page never stops short of the tickets; the order is
        // never paid twice, as the page pays no more.
        status.textContent = "Your payment is being processed. Your tickets appear here as soon as it goes through: do not pay again.";
        timers.order = setTimeout(async () => {
          let res = { status: 0 };
          try { res = await call("GET", "/orders/" + encodeURIComponent(o.id)); } catch (_) { /* read again */ }
          showOrder(res.status === 200 ? res.data : o);
        }, 1000);
        break;
      case "payment_failed":
        status.textContent = "The payment failed; the tickets went back on sale. Nothing was charged.";
        break;
      default:
        status.textContent = "Order " + o.id + " is " + o.status.replace("_", " ") + ".";
    }
    // Moved to only when the news changes: a pending order is read again every second, and
    // moving the focus each time would make a screen reader say it over and over.
    if (changed) status.focus();
  }

  $("buy-more").addEventListener("click", () => {
    show("order", false);
    say("");
    endHold();
  });

  start().catch(() => say("The page could not start; reload it."));
})();
