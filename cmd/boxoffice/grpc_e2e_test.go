package main

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "boxoffice/gen/boxoffice/v1"
	"boxoffice/gen/boxoffice/v1/boxofficev1connect"
	"boxoffice/rpc"
)

// parityStep is one call of the scripted scenario, in its REST and its gRPC form. $show, $hold
// and $order in paths, bodies and messages stand for the transport's own show and the ids its
// earlier steps saved.
type parityStep struct {
	name string
	// REST form; idem is the Idempotency-Key ("" for none).
	method, path string
	body         string
	idem         string
	// gRPC form: the method name, the request as protojson, and where in the response message the
	// REST body goes ("" when the REST body is the whole message).
	rpc, req, wrap string
	newResp        func() proto.Message
	// save names the variable that the answer's id is kept in; saveKey the one its plain API key
	// ("key") is kept in; saveToken the one its queue ticket's token is kept in.
	save, saveKey, saveToken string
	// as is the key both forms use: "admin", "client", "other" (a second client key: another
	// sales channel), "$var" (a key saved by saveKey), or "" for the admin key on PutShow (admin
	// only) and the client key elsewhere.
	as string
	// want, when set, is the REST status the step must get, and wantGRPC the gRPC code of a
	// failure: parity alone would not notice both transports being wrong the same way.
	want     int
	wantGRPC codes.Code
}

// admin says whether the step runs with the admin key.
func (st parityStep) admin() bool { return st.as == "admin" || st.as == "" && st.rpc == "PutShow" }

// key is the API key the step runs with, given the client keys and the transport's variables.
func (st parityStep) key(clientKey, otherKey string, vars map[string]string) string {
	switch {
	case st.admin():
		return adminKey
	case st.as == "other":
		return otherKey
	case strings.HasPrefix(st.as, "$"):
		return vars[st.as[1:]]
	}
	return clientKey
}

// outcome is what a transport answered, normalized so that both transports can be compared:
// server-made ids, times, ticket codes and show names are replaced by placeholders.
type outcome struct {
	OK       bool
	Status   int    // the REST status of a failure (the Problem's status over gRPC)
	Code     string // the SPEC code of a failure
	Replayed bool
	Body     string // the answer as the gRPC message's protojson (a failure's as its Problem), normalized
}

var (
	idRE     = regexp.MustCompile(`\b(hld|ord|evt|key|qtk)_[a-z0-9]+`)
	timeRE   = regexp.MustCompile(`"\d{4}-\d\d-\d\dT[0-9:.]+Z"`)
	ticketRE = regexp.MustCompile(`"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}"`)
	showRE   = regexp.MustCompile(`parity-(rest|grpc)`)
	secretRE = regexp.MustCompile(`whsec_[A-Za-z0-9+/=]+`)
	apiKeyRE = regexp.MustCompile(`"bo_[A-Za-z0-9]+"`)
	detailRE = regexp.MustCompile(`"detail":"(?:[^"\\]|\\.)*"`)
	// A queue ticket's token is signed over its show, and its wait counts down to the on-sale
	// by the second between the two transports' calls.
	tokenRE = regexp.MustCompile(`"token":"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"`)
	waitRE  = regexp.MustCompile(`"estimated_wait_seconds":\d+`)
)

func normalize(s string) string {
	s = idRE.ReplaceAllString(s, "${1}_<id>")
	s = timeRE.ReplaceAllString(s, `"<time>"`)
	s = ticketRE.ReplaceAllString(s, `"<ticket>"`)
	s = secretRE.ReplaceAllString(s, "whsec_<secret>")
	s = apiKeyRE.ReplaceAllString(s, `"bo_<key>"`)
	s = tokenRE.ReplaceAllString(s, `"token":"<token>"`)
	s = waitRE.ReplaceAllString(s, `"estimated_wait_seconds":"<seconds>"`)
	return showRE.ReplaceAllString(s, "<show>")
}

// canonical renders a message as sorted-key JSON with proto field names.
func canonical(t *testing.T, m proto.Message) (string, map[string]any) {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return normalize(string(out)), v
}

func expand(s string, vars map[string]string) string {
	for k, v := range vars {
		s = strings.ReplaceAll(s, "$"+k, v)
	}
	return s
}

// savedID is the id of the answer: at its top or inside its wrapper field.
func savedID(v map[string]any, wrap string) string { return savedField(v, wrap, "id") }

// savedField is a field of the answer: at its top or inside its wrapper field.
func savedField(v map[string]any, wrap, field string) string {
	if wrap != "" {
		v, _ = v[wrap].(map[string]any)
	}
	s, _ := v[field].(string)
	return s
}

// save keeps what st saves of an answer v in vars.
func (st parityStep) keep(v map[string]any, vars map[string]string) {
	if st.save != "" {
		vars[st.save] = savedID(v, st.wrap)
	}
	if st.saveKey != "" {
		vars[st.saveKey] = savedField(v, st.wrap, "key")
	}
	if st.saveToken != "" {
		vars[st.saveToken] = savedField(v, st.wrap, "token")
	}
}

func parityScenario() []parityStep {
	show := func() proto.Message { return &pb.PutShowResponse{} }
	hold := func() proto.Message { return &pb.CreateHoldResponse{} }
	getHold := func() proto.Message { return &pb.GetHoldResponse{} }
	confirm := func() proto.Message { return &pb.ConfirmHoldResponse{} }
	purchase := func() proto.Message { return &pb.PurchaseResponse{} }
	cancel := func() proto.Message { return &pb.CancelOrderResponse{} }
	order := func() proto.Message { return &pb.GetOrderResponse{} }
	orders := func() proto.Message { return &pb.ListOrdersResponse{} }
	empty := func() proto.Message { return &pb.ReleaseHoldResponse{} }
	webhook := func() proto.Message { return &pb.PutWebhookEndpointResponse{} }
	getWebhook := func() proto.Message { return &pb.GetWebhookEndpointResponse{} }
	webhooks := func() proto.Message { return &pb.ListWebhookEndpointsResponse{} }
	deleted := func() proto.Message { return &pb.DeleteWebhookEndpointResponse{} }
	events := func() proto.Message { return &pb.ListEventsResponse{} }
	createdKey := func() proto.Message { return &pb.CreateApiKeyResponse{} }
	keys := func() proto.Message { return &pb.ListApiKeysResponse{} }
	revoked := func() proto.Message { return &pb.RevokeApiKeyResponse{} }
	rotated := func() proto.Message { return &pb.RotateWebhookSecretResponse{} }
	room := func() proto.Message { return &pb.PutWaitingRoomResponse{} }
	getRoom := func() proto.Message { return &pb.GetWaitingRoomResponse{} }
	roomGone := func() proto.Message { return &pb.DeleteWaitingRoomResponse{} }
	pausedRoom := func() proto.Message { return &pb.PauseWaitingRoomResponse{} }
	joined := func() proto.Message { return &pb.JoinWaitingRoomResponse{} }
	ticket := func() proto.Message { return &pb.GetQueueTicketResponse{} }
	roomBody := `{"opens_at":"2027-02-01T10:00:00Z","admit_per_second":50}`
	roomReq := `{"show_id":"$show","opens_at":"2027-02-01T10:00:00Z","admit_per_second":50}`
	joinBody := `{"buyer":{"email":"q@example.com"}}`
	joinReq := `{"show_id":"$show","buyer":{"email":"q@example.com"}}`
	// The endpoints subscribe to hold.expired only, which no step makes (holds last 600s), so
	// that the scenario never has the server deliver to hooks.example.com.
	hookBody := `{"url":"https://hooks.example.com/boxoffice","event_types":["hold.expired"]}`
	hookReq := `{"endpoint_id":"$show","url":"https://hooks.example.com/boxoffice","event_types":["hold.expired"]}`
	hook2Body := `{"url":"https://hooks.example.com/boxoffice/v2","event_types":["hold.expired"]}`
	hook2Req := `{"endpoint_id":"$show","url":"https://hooks.example.com/boxoffice/v2","event_types":["hold.expired"]}`
	// A seated tier of six seats, one flagged accessible: the same seat_map in both forms.
	seated := `{"id":"stalls","name":"Stalls","price":{"amount":6000,"currency":"EUR"},` +
		`"seat_map":{"sections":[{"id":"S","rows":[{"id":"A","seats":6,"accessible":["6"]}]}]}}`
	seatHold := func(name, idem, body string, want int, code codes.Code) parityStep {
		return parityStep{name: name, method: "POST", path: "/v1/shows/$show/holds", idem: idem, body: body,
			rpc: "CreateHold", req: `{"show_id":"$show",` + strings.TrimPrefix(body, "{"), wrap: "hold", newResp: hold, want: want, wantGRPC: code}
	}
	showBody := `{"name":"Parity","starts_at":"2027-03-01T19:30:00Z","hold_ttl_seconds":600,"max_per_buyer":3,"cancel_cutoff_seconds":3600,` +
		`"tiers":[{"id":"ga","name":"General","capacity":4,"price":{"amount":4500,"currency":"EUR"}},` + seated + `]}`
	showReq := `{"show_id":"$show","name":"Parity","starts_at":"2027-03-01T19:30:00Z","hold_ttl_seconds":600,"max_per_buyer":3,"cancel_cutoff_seconds":3600,` +
		`"tiers":[{"id":"ga","name":"General","capacity":4,"price":{"amount":4500,"currency":"EUR"}},` + seated + `]}`
	return []parityStep{
		{name: "put show", method: "PUT", path: "/v1/shows/$show", body: showBody, rpc: "PutShow", req: showReq, wrap: "show", newResp: show},
		{name: "put show again", method: "PUT", path: "/v1/shows/$show", body: showBody, rpc: "PutShow", req: showReq, wrap: "show", newResp: show},
		{name: "get show", method: "GET", path: "/v1/shows/$show", rpc: "GetShow", req: `{"show_id":"$show"}`, wrap: "show", newResp: func() proto.Message { return &pb.GetShowResponse{} }},
		seatHold("hold named seats", "s1", `{"tier_id":"stalls","seats":["S-A-1","S-A-2"],"buyer":{"email":"s@example.com"}}`, 201, 0),
		seatHold("named seat taken", "s2", `{"tier_id":"stalls","seats":["S-A-2","S-A-3"],"buyer":{"email":"t@example.com"}}`, 409, codes.FailedPrecondition),
		seatHold("unknown seat", "s3", `{"tier_id":"stalls","seats":["S-Z-9"],"buyer":{"email":"t@example.com"}}`, 0, 0),
		seatHold("best available seats", "s4", `{"tier_id":"stalls","quantity":2,"buyer":{"email":"t@example.com"}}`, 201, 0),
		seatHold("best available replayed", "s4", `{"tier_id":"stalls","quantity":2,"buyer":{"email":"t@example.com"}}`, 201, 0),
		{name: "unknown tier", method: "POST", path: "/v1/shows/$show/holds", idem: "h0", body: `{"tier_id":"vip","quantity":1,"buyer":{"email":"a@example.com"}}`,
			rpc: "CreateHold", req: `{"show_id":"$show","tier_id":"vip","quantity":1,"buyer":{"email":"a@example.com"}}`, wrap: "hold", newResp: hold},
		{name: "bad quantity", method: "POST", path: "/v1/shows/$show/holds", idem: "h00", body: `{"tier_id":"ga","quantity":0,"buyer":{"email":"a@example.com"}}`,
			rpc: "CreateHold", req: `{"show_id":"$show","tier_id":"ga","quantity":0,"buyer":{"email":"a@example.com"}}`, wrap: "hold", newResp: hold},
		{name: "hold", method: "POST", path: "/v1/shows/$show/holds", idem: "h1", body: `{"tier_id":"ga","quantity":2,"buyer":{"email":"a@example.com"}}`,
			rpc: "CreateHold", req: `{"show_id":"$show","tier_id":"ga","quantity":2,"buyer":{"email":"a@example.com"}}`, wrap: "hold", newResp: hold, save: "hold"},
		{name: "hold replayed", method: "POST", path: "/v1/shows/$show/holds", idem: "h1", body: `{"tier_id":"ga","quantity":2,"buyer":{"email":"a@example.com"}}`,
			rpc: "CreateHold", req: `{"show_id":"$show","tier_id":"ga","quantity":2,"buyer":{"email":"a@example.com"}}`, wrap: "hold", newResp: hold},
		{name: "key reused", method: "POST", path: "/v1/shows/$show/holds", idem: "h1", body: `{"tier_id":"ga","quantity":1,"buyer":{"email":"a@example.com"}}`,
			rpc: "CreateHold", req: `{"show_id":"$show","tier_id":"ga","quantity":1,"buyer":{"email":"a@example.com"}}`, wrap: "hold", newResp: hold},
		{name: "no key", method: "POST", path: "/v1/shows/$show/holds", body: `{"tier_id":"ga","quantity":1,"buyer":{"email":"a@example.com"}}`,
			rpc: "CreateHold", req: `{"show_id":"$show","tier_id":"ga","quantity":1,"buyer":{"email":"a@example.com"}}`, wrap: "hold", newResp: hold},
		{name: "sold out", method: "POST", path: "/v1/shows/$show/holds", idem: "h2", body: `{"tier_id":"ga","quantity":3,"buyer":{"email":"b@example.com"}}`,
			rpc: "CreateHold", req: `{"show_id":"$show","tier_id":"ga","quantity":3,"buyer":{"email":"b@example.com"}}`, wrap: "hold", newResp: hold},
		{name: "buyer limit", method: "POST", path: "/v1/shows/$show/holds", idem: "h3", body: `{"tier_id":"ga","quantity":2,"buyer":{"email":"a@example.com"}}`,
			rpc: "CreateHold", req: `{"show_id":"$show","tier_id":"ga","quantity":2,"buyer":{"email":"a@example.com"}}`, wrap: "hold", newResp: hold},
		{name: "declined", method: "POST", path: "/v1/holds/$hold/confirm", idem: "c1", body: `{"payment":{"token":"tok_declined"}}`,
			rpc: "ConfirmHold", req: `{"hold_id":"$hold","payment":{"token":"tok_declined"}}`, wrap: "order", newResp: confirm},
		{name: "declined replayed", method: "POST", path: "/v1/holds/$hold/confirm", idem: "c1", body: `{"payment":{"token":"tok_declined"}}`,
			rpc: "ConfirmHold", req: `{"hold_id":"$hold","payment":{"token":"tok_declined"}}`, wrap: "order", newResp: confirm},
		{name: "confirm", method: "POST", path: "/v1/holds/$hold/confirm", idem: "c2", body: `{"payment":{"token":"tok_ok"}}`,
			rpc: "ConfirmHold", req: `{"hold_id":"$hold","payment":{"token":"tok_ok"}}`, wrap: "order", newResp: confirm, save: "order"},
		{name: "confirm replayed", method: "POST", path: "/v1/holds/$hold/confirm", idem: "c2", body: `{"payment":{"token":"tok_ok"}}`,
			rpc: "ConfirmHold", req: `{"hold_id":"$hold","payment":{"token":"tok_ok"}}`, wrap: "order", newResp: confirm},
		{name: "release confirmed", method: "DELETE", path: "/v1/holds/$hold", rpc: "ReleaseHold", req: `{"hold_id":"$hold"}`, newResp: empty},
		{name: "get hold", method: "GET", path: "/v1/holds/$hold", rpc: "GetHold", req: `{"hold_id":"$hold"}`, wrap: "hold", newResp: getHold},
		{name: "unknown hold", method: "GET", path: "/v1/holds/hld_nothing", rpc: "GetHold", req: `{"hold_id":"hld_nothing"}`, wrap: "hold", newResp: getHold},
		{name: "purchase", method: "POST", path: "/v1/purchases", idem: "p1",
			body: `{"show_id":"$show","tier_id":"ga","quantity":1,"buyer":{"email":"c@example.com"},"payment":{"token":"tok_ok"}}`,
			rpc:  "Purchase", req: `{"show_id":"$show","tier_id":"ga","quantity":1,"buyer":{"email":"c@example.com"},"payment":{"token":"tok_ok"}}`,
			wrap: "order", newResp: purchase, save: "bought"},
		{name: "purchase declined", method: "POST", path: "/v1/purchases", idem: "p2",
			body: `{"show_id":"$show","tier_id":"ga","quantity":1,"buyer":{"email":"d@example.com"},"payment":{"token":"tok_declined"}}`,
			rpc:  "Purchase", req: `{"show_id":"$show","tier_id":"ga","quantity":1,"buyer":{"email":"d@example.com"},"payment":{"token":"tok_declined"}}`,
			wrap: "order", newResp: purchase},
		{name: "cancel", method: "POST", path: "/v1/orders/$bought/cancel", idem: "x1", rpc: "CancelOrder", req: `{"order_id":"$bought"}`, wrap: "order", newResp: cancel},
		{name: "cancel again", method: "POST", path: "/v1/orders/$bought/cancel", idem: "x2", rpc: "CancelOrder", req: `{"order_id":"$bought"}`, wrap: "order", newResp: cancel},
		{name: "get order", method: "GET", path: "/v1/orders/$order", rpc: "GetOrder", req: `{"order_id":"$order"}`, wrap: "order", newResp: order},
		{name: "list orders", method: "GET", path: "/v1/orders?show_id=$show&limit=1", rpc: "ListOrders", req: `{"show_id":"$show","limit":1}`, newResp: orders},
		{name: "bad limit", method: "GET", path: "/v1/orders?show_id=$show&limit=101", rpc: "ListOrders", req: `{"show_id":"$show","limit":101}`, newResp: orders},

		// Sales channels: another client key gets not_found for every hold and order of the
		// first, changes nothing, and lists none of them; the admin sees them.
		{name: "other gets hold", method: "GET", path: "/v1/holds/$hold", rpc: "GetHold", req: `{"hold_id":"$hold"}`, wrap: "hold", newResp: getHold,
			as: "other", want: 404, wantGRPC: codes.NotFound},
		{name: "other releases hold", method: "DELETE", path: "/v1/holds/$hold", rpc: "ReleaseHold", req: `{"hold_id":"$hold"}`, newResp: empty,
			as: "other", want: 404, wantGRPC: codes.NotFound},
		{name: "other confirms hold", method: "POST", path: "/v1/holds/$hold/confirm", idem: "oc1", body: `{"payment":{"token":"tok_ok"}}`,
			rpc: "ConfirmHold", req: `{"hold_id":"$hold","payment":{"token":"tok_ok"}}`, wrap: "order", newResp: confirm,
			as: "other", want: 404, wantGRPC: codes.NotFound},
		{name: "other gets order", method: "GET", path: "/v1/orders/$order", rpc: "GetOrder", req: `{"order_id":"$order"}`, wrap: "order", newResp: order,
			as: "other", want: 404, wantGRPC: codes.NotFound},
		{name: "other cancels order", method: "POST", path: "/v1/orders/$order/cancel", idem: "ox1", rpc: "CancelOrder", req: `{"order_id":"$order"}`,
			wrap: "order", newResp: cancel, as: "other", want: 404, wantGRPC: codes.NotFound},
		{name: "other lists orders", method: "GET", path: "/v1/orders?show_id=$show", rpc: "ListOrders", req: `{"show_id":"$show"}`, newResp: orders,
			as: "other", want: 200},
		{name: "order unchanged", method: "GET", path: "/v1/orders/$order", rpc: "GetOrder", req: `{"order_id":"$order"}`, wrap: "order", newResp: order, want: 200},
		{name: "admin gets the channel's order", method: "GET", path: "/v1/orders/$order", rpc: "GetOrder", req: `{"order_id":"$order"}`, wrap: "order", newResp: order,
			as: "admin", want: 200},
		{name: "admin lists the channel's orders", method: "GET", path: "/v1/orders?show_id=$show", rpc: "ListOrders", req: `{"show_id":"$show"}`, newResp: orders,
			as: "admin", want: 200},
		{name: "feed as client", method: "GET", path: "/v1/feed?limit=1", rpc: "ListEvents", req: `{"limit":1}`, newResp: events,
			want: 403, wantGRPC: codes.PermissionDenied},
		{name: "get show at the end", method: "GET", path: "/v1/shows/$show", rpc: "GetShow", req: `{"show_id":"$show"}`, wrap: "show", newResp: func() proto.Message { return &pb.GetShowResponse{} }},

		// API keys: the secret is shown once, keys list without secrets, a revoked key is 401.
		{name: "create key", method: "POST", path: "/v1/api-keys", idem: "k1", body: `{"role":"client","label":"parity"}`,
			rpc: "CreateApiKey", req: `{"role":"client","label":"parity"}`, newResp: createdKey, as: "admin", want: 201, save: "newkey", saveKey: "secret"},
		{name: "create key replayed", method: "POST", path: "/v1/api-keys", idem: "k1", body: `{"role":"client","label":"parity"}`,
			rpc: "CreateApiKey", req: `{"role":"client","label":"parity"}`, newResp: createdKey, as: "admin", want: 201},
		{name: "new key works", method: "GET", path: "/v1/orders?show_id=$show", rpc: "ListOrders", req: `{"show_id":"$show"}`, newResp: orders,
			as: "$secret", want: 200},
		{name: "list keys as client", method: "GET", path: "/v1/api-keys", rpc: "ListApiKeys", req: `{}`, newResp: keys,
			want: 403, wantGRPC: codes.PermissionDenied},
		{name: "revoke key", method: "DELETE", path: "/v1/api-keys/$newkey", rpc: "RevokeApiKey", req: `{"key_id":"$newkey"}`, newResp: revoked,
			as: "admin", want: 204},
		{name: "revoke key again", method: "DELETE", path: "/v1/api-keys/$newkey", rpc: "RevokeApiKey", req: `{"key_id":"$newkey"}`, newResp: revoked,
			as: "admin", want: 204},
		{name: "revoke unknown key", method: "DELETE", path: "/v1/api-keys/key_nothing", rpc: "RevokeApiKey", req: `{"key_id":"key_nothing"}`, newResp: revoked,
			as: "admin", want: 404, wantGRPC: codes.NotFound},
		{name: "revoked key", method: "GET", path: "/v1/orders?show_id=$show", rpc: "ListOrders", req: `{"show_id":"$show"}`, newResp: orders,
			as: "$secret", want: 401, wantGRPC: codes.Unauthenticated},
		// Every key by then, both transports' revoked ones among them: ids, roles, labels and
		// times, never a secret or a hash.
		{name: "list keys", method: "GET", path: "/v1/api-keys", rpc: "ListApiKeys", req: `{}`, newResp: keys, as: "admin", want: 200},

		// Webhook endpoints, admin only; each transport has its own endpoint, named as its show.
		{name: "put webhook", method: "PUT", path: "/v1/webhook-endpoints/$show", body: hookBody, rpc: "PutWebhookEndpoint", req: hookReq,
			wrap: "webhook_endpoint", newResp: webhook, as: "admin", want: 201},
		{name: "replace webhook", method: "PUT", path: "/v1/webhook-endpoints/$show", body: hook2Body, rpc: "PutWebhookEndpoint", req: hook2Req,
			wrap: "webhook_endpoint", newResp: webhook, as: "admin", want: 200},
		{name: "get webhook", method: "GET", path: "/v1/webhook-endpoints/$show", rpc: "GetWebhookEndpoint", req: `{"endpoint_id":"$show"}`,
			wrap: "webhook_endpoint", newResp: getWebhook, as: "admin", want: 200},
		{name: "rotate webhook secret", method: "POST", path: "/v1/webhook-endpoints/$show/rotate-secret", idem: "r1", body: `{"expires_in":3600}`,
			rpc: "RotateWebhookSecret", req: `{"endpoint_id":"$show","expires_in":3600}`, wrap: "webhook_endpoint", newResp: rotated, as: "admin", want: 200},
		{name: "rotate webhook secret replayed", method: "POST", path: "/v1/webhook-endpoints/$show/rotate-secret", idem: "r1", body: `{"expires_in":3600}`,
			rpc: "RotateWebhookSecret", req: `{"endpoint_id":"$show","expires_in":3600}`, wrap: "webhook_endpoint", newResp: rotated, as: "admin", want: 200},
		{name: "rotate unknown webhook", method: "POST", path: "/v1/webhook-endpoints/nothing/rotate-secret", idem: "r2",
			rpc: "RotateWebhookSecret", req: `{"endpoint_id":"nothing"}`, wrap: "webhook_endpoint", newResp: rotated, as: "admin", want: 404, wantGRPC: codes.NotFound},
		{name: "rotate webhook secret as client", method: "POST", path: "/v1/webhook-endpoints/$show/rotate-secret", idem: "r3",
			rpc: "RotateWebhookSecret", req: `{"endpoint_id":"$show"}`, wrap: "webhook_endpoint", newResp: rotated, want: 403, wantGRPC: codes.PermissionDenied},
		// Both transports' endpoints by then, the same once normalized.
		{name: "list webhooks", method: "GET", path: "/v1/webhook-endpoints", rpc: "ListWebhookEndpoints", req: `{}`,
			newResp: webhooks, as: "admin", want: 200},
		{name: "webhook on loopback", method: "PUT", path: "/v1/webhook-endpoints/$show", body: `{"url":"http://127.0.0.1:9/hook","event_types":["hold.expired"]}`,
			rpc: "PutWebhookEndpoint", req: `{"endpoint_id":"$show","url":"http://127.0.0.1:9/hook","event_types":["hold.expired"]}`,
			wrap: "webhook_endpoint", newResp: webhook, as: "admin", want: 400, wantGRPC: codes.InvalidArgument},
		{name: "webhook not http", method: "PUT", path: "/v1/webhook-endpoints/$show", body: `{"url":"ftp://hooks.example.com/","event_types":["hold.expired"]}`,
			rpc: "PutWebhookEndpoint", req: `{"endpoint_id":"$show","url":"ftp://hooks.example.com/","event_types":["hold.expired"]}`,
			wrap: "webhook_endpoint", newResp: webhook, as: "admin", want: 400, wantGRPC: codes.InvalidArgument},
		{name: "webhook bad id", method: "PUT", path: "/v1/webhook-endpoints/Not_A_Name", body: hookBody,
			rpc: "PutWebhookEndpoint", req: `{"endpoint_id":"Not_A_Name","url":"https://hooks.example.com/boxoffice","event_types":["hold.expired"]}`,
			wrap: "webhook_endpoint", newResp: webhook, as: "admin", want: 400, wantGRPC: codes.InvalidArgument},
		{name: "put webhook as client", method: "PUT", path: "/v1/webhook-endpoints/$show", body: hookBody, rpc: "PutWebhookEndpoint", req: hookReq,
			wrap: "webhook_endpoint", newResp: webhook, as: "client", want: 403, wantGRPC: codes.PermissionDenied},
		{name: "get webhook as client", method: "GET", path: "/v1/webhook-endpoints/$show", rpc: "GetWebhookEndpoint", req: `{"endpoint_id":"$show"}`,
			wrap: "webhook_endpoint", newResp: getWebhook, as: "client", want: 403, wantGRPC: codes.PermissionDenied},
		{name: "list webhooks as client", method: "GET", path: "/v1/webhook-endpoints", rpc: "ListWebhookEndpoints", req: `{}`,
			newResp: webhooks, as: "client", want: 403, wantGRPC: codes.PermissionDenied},
		{name: "delete webhook as client", method: "DELETE", path: "/v1/webhook-endpoints/$show", rpc: "DeleteWebhookEndpoint", req: `{"endpoint_id":"$show"}`,
			newResp: deleted, as: "client", want: 403, wantGRPC: codes.PermissionDenied},
		{name: "delete webhook", method: "DELETE", path: "/v1/webhook-endpoints/$show", rpc: "DeleteWebhookEndpoint", req: `{"endpoint_id":"$show"}`,
			newResp: deleted, as: "admin", want: 204},
		{name: "delete webhook again", method: "DELETE", path: "/v1/webhook-endpoints/$show", rpc: "DeleteWebhookEndpoint", req: `{"endpoint_id":"$show"}`,
			newResp: deleted, as: "admin", want: 204},
		{name: "deleted webhook", method: "GET", path: "/v1/webhook-endpoints/$show", rpc: "GetWebhookEndpoint", req: `{"endpoint_id":"$show"}`,
			wrap: "webhook_endpoint", newResp: getWebhook, as: "admin", want: 404, wantGRPC: codes.NotFound},
		{name: "webhook id not a name", method: "GET", path: "/v1/webhook-endpoints/Not_A_Name", rpc: "GetWebhookEndpoint", req: `{"endpoint_id":"Not_A_Name"}`,
			wrap: "webhook_endpoint", newResp: getWebhook, as: "admin", want: 404, wantGRPC: codes.NotFound},
		{name: "no webhooks left", method: "GET", path: "/v1/webhook-endpoints", rpc: "ListWebhookEndpoints", req: `{}`,
			newResp: webhooks, as: "admin", want: 200},

		// A waiting room, last (from here on only admitted buyers may hold): its on-sale is far
		// off, so every ticket waits and the draw keeps positions secret.
		{name: "put waiting room", method: "PUT", path: "/v1/shows/$show/waiting-room", body: roomBody, rpc: "PutWaitingRoom", req: roomReq,
			wrap: "waiting_room", newResp: room, as: "admin", want: 201},
		{name: "put waiting room again", method: "PUT", path: "/v1/shows/$show/waiting-room", body: roomBody, rpc: "PutWaitingRoom", req: roomReq,
			wrap: "waiting_room", newResp: room, as: "admin", want: 200},
		{name: "put waiting room as client", method: "PUT", path: "/v1/shows/$show/waiting-room", body: roomBody, rpc: "PutWaitingRoom", req: roomReq,
			wrap: "waiting_room", newResp: room, want: 403, wantGRPC: codes.PermissionDenied},
		{name: "bad waiting room", method: "PUT", path: "/v1/shows/$show/waiting-room", body: `{"opens_at":"2027-02-01T10:00:00Z","admit_per_second":0}`,
			rpc: "PutWaitingRoom", req: `{"show_id":"$show","opens_at":"2027-02-01T10:00:00Z","admit_per_second":0}`,
			wrap: "waiting_room", newResp: room, as: "admin", want: 400, wantGRPC: codes.InvalidArgument},
		{name: "join the queue", method: "POST", path: "/v1/shows/$show/waiting-room/tickets", idem: "q1", body: joinBody, rpc: "JoinWaitingRoom", req: joinReq,
			wrap: "queue_ticket", newResp: joined, want: 201, saveToken: "qtoken"},
		{name: "join again", method: "POST", path: "/v1/shows/$show/waiting-room/tickets", idem: "q2", body: joinBody, rpc: "JoinWaitingRoom", req: joinReq,
			wrap: "queue_ticket", newResp: joined, want: 200},
		{name: "join without a key", method: "POST", path: "/v1/shows/$show/waiting-room/tickets", body: joinBody, rpc: "JoinWaitingRoom", req: joinReq,
			wrap: "queue_ticket", newResp: joined, want: 400, wantGRPC: codes.InvalidArgument},
		{name: "join a show without a room", method: "POST", path: "/v1/shows/nothing/waiting-room/tickets", idem: "q3", body: joinBody,
			rpc: "JoinWaitingRoom", req: `{"show_id":"nothing","buyer":{"email":"q@example.com"}}`, wrap: "queue_ticket", newResp: joined,
			want: 404, wantGRPC: codes.NotFound},
		{name: "get waiting room", method: "GET", path: "/v1/shows/$show/waiting-room", rpc: "GetWaitingRoom", req: `{"show_id":"$show"}`,
			wrap: "waiting_room", newResp: getRoom, want: 200},
		{name: "get queue ticket", method: "GET", path: "/v1/waiting-room/tickets/$qtoken", rpc: "GetQueueTicket", req: `{"token":"$qtoken"}`,
			wrap: "queue_ticket", newResp: ticket, want: 200},
		{name: "pause waiting room", method: "POST", path: "/v1/shows/$show/waiting-room/pause", idem: "q5", rpc: "PauseWaitingRoom",
			req: `{"show_id":"$show","paused":true}`, wrap: "waiting_room", newResp: pausedRoom, as: "admin", want: 200},
		{name: "pause waiting room as client", method: "POST", path: "/v1/shows/$show/waiting-room/pause", idem: "q6", rpc: "PauseWaitingRoom",
			req: `{"show_id":"$show","paused":true}`, wrap: "waiting_room", newResp: pausedRoom, want: 403, wantGRPC: codes.PermissionDenied},
		{name: "paused queue ticket", method: "GET", path: "/v1/waiting-room/tickets/$qtoken", rpc: "GetQueueTicket", req: `{"token":"$qtoken"}`,
			wrap: "queue_ticket", newResp: ticket, want: 200},
		{name: "resume waiting room", method: "POST", path: "/v1/shows/$show/waiting-room/resume", idem: "q7", rpc: "PauseWaitingRoom",
			req: `{"show_id":"$show","paused":false}`, wrap: "waiting_room", newResp: pausedRoom, as: "admin", want: 200},
		{name: "pause a show without a room", method: "POST", path: "/v1/shows/nothing/waiting-room/pause", idem: "q8", rpc: "PauseWaitingRoom",
			req: `{"show_id":"nothing","paused":true}`, wrap: "waiting_room", newResp: pausedRoom, as: "admin", want: 404, wantGRPC: codes.NotFound},
		{name: "forged queue ticket", method: "GET", path: "/v1/waiting-room/tickets/djF8eA.AAAAAAAAAAAAAAAAAAAAAA", rpc: "GetQueueTicket",
			req: `{"token":"djF8eA.AAAAAAAAAAAAAAAAAAAAAA"}`, wrap: "queue_ticket", newResp: ticket},
		{name: "hold without admission", method: "POST", path: "/v1/shows/$show/holds", idem: "q4", body: `{"tier_id":"ga","quantity":1,"buyer":{"email":"q@example.com"}}`,
			rpc: "CreateHold", req: `{"show_id":"$show","tier_id":"ga","quantity":1,"buyer":{"email":"q@example.com"}}`, wrap: "hold", newResp: hold,
			want: 403, wantGRPC: codes.PermissionDenied},
		{name: "delete waiting room", method: "DELETE", path: "/v1/shows/$show/waiting-room", rpc: "DeleteWaitingRoom", req: `{"show_id":"$show"}`,
			newResp: roomGone, as: "admin", want: 204},
		{name: "delete waiting room again", method: "DELETE", path: "/v1/shows/$show/waiting-room", rpc: "DeleteWaitingRoom", req: `{"show_id":"$show"}`,
			newResp: roomGone, as: "admin", want: 404, wantGRPC: codes.NotFound},
		{name: "deleted waiting room", method: "GET", path: "/v1/shows/$show/waiting-room", rpc: "GetWaitingRoom", req: `{"show_id":"$show"}`,
			wrap: "waiting_room", newResp: getRoom, want: 404, wantGRPC: codes.NotFound},
	}
}

// TestGRPCRESTParity runs one scripted scenario over REST and over gRPC (a grpc-go client on the
// same port, HTTP/2 cleartext) against the same server, each on its own show, and checks that
// every step gives the same answer: the same data, the same SPEC error code and REST status, the
// same replay marking. The script includes the sales channels (a second client key is refused
// every hold and order of the first, which stay as they were), the admin-only feed, the API key
// life cycle, a webhook secret rotation, and a waiting room (its put, a buyer's joins, a queue
// ticket read by its token, a hold refused without an admission, its delete).
func TestGRPCRESTParity(t *testing.T) {
	srv := startServer(t, t.TempDir())
	clientKey := srv.newClientKey(t)
	otherKey := srv.newClientKey(t) // another sales channel

	conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(srv.URL, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	restVars := map[string]string{"show": "parity-rest"}
	grpcVars := map[string]string{"show": "parity-grpc"}
	for _, st := range parityScenario() {
		// REST.
		c := srv.client(st.key(clientKey, otherKey, restVars))
		var headers []string
		// Each transport has keys of its own: one key is one effect whichever transport carries
		// it (TestOneKeyAcrossTransports), and the two runs are different requests.
		if st.idem != "" {
			headers = []string{"Idempotency-Key", st.idem + "-rest"}
		}
		var body any
		if st.body != "" {
			body = expand(st.body, restVars)
		}
		r, err := c.do(st.method, expand(st.path, restVars), body, headers...)
		if err != nil {
			t.Fatalf("%s: REST: %v", st.name, err)
		}
		restOut := outcome{OK: r.Status < 400, Replayed: r.Header.Get("Idempotent-Replayed") == "true"}
		if restOut.OK {
			msg := st.newResp()
			doc := "{}"
			if len(r.Body) > 0 {
				doc = string(r.Body)
				if st.wrap != "" {
					extra := ""
					if (st.rpc == "PutShow" || st.rpc == "PutWebhookEndpoint" || st.rpc == "PutWaitingRoom" || st.rpc == "JoinWaitingRoom") && r.Status == 201 {
						extra = `,"created":true`
					}
					doc = `{"` + st.wrap + `":` + doc + extra + `}`
				}
			}
			if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(doc), msg); err != nil {
				t.Fatalf("%s: REST body %s: %v", st.name, r.Body, err)
			}
			var v map[string]any
			restOut.Body, v = canonical(t, msg)
			st.keep(v, restVars)
		} else {
			restOut.Status, restOut.Code = r.Status, r.code()
			var p pb.Problem
			if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(r.Body, &p); err != nil {
				t.Fatalf("%s: REST problem %s: %v", st.name, r.Body, err)
			}
			restOut.Body, _ = canonical(t, &p)
		}

		// gRPC.
		pairs := []string{"authorization", "Bearer " + st.key(clientKey, otherKey, grpcVars)}
		if st.idem != "" {
			pairs = append(pairs, "idempotency-key", st.idem+"-grpc")
		}
		ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), metadata.Pairs(pairs...)), 30*time.Second)
		resp := st.newResp()
		req := requestFor(t, st.rpc)
		if err := protojson.Unmarshal([]byte(expand(st.req, grpcVars)), req); err != nil {
			t.Fatalf("%s: request: %v", st.name, err)
		}
		var header, trailer metadata.MD
		err = conn.Invoke(ctx, "/"+boxofficev1connect.BoxOfficeServiceName+"/"+st.rpc, req, resp, grpc.Header(&header), grpc.Trailer(&trailer))
		cancel()
		// A failure may come as trailers only, so the marker is looked for in both.
		replayed := slices.Contains(append(header.Get("idempotent-replayed"), trailer.Get("idempotent-replayed")...), "true")
		grpcOut := outcome{OK: err == nil, Replayed: replayed}
		if err == nil {
			var v map[string]any
			grpcOut.Body, v = canonical(t, resp)
			st.keep(v, grpcVars)
		} else {
			s := status.Convert(err)
			for _, d := range s.Details() {
				if p, ok := d.(*pb.Problem); ok {
					grpcOut.Status, grpcOut.Code = int(p.Status), p.Code
					grpcOut.Body, _ = canonical(t, p)
				}
			}
			if grpcOut.Code == "" {
				t.Fatalf("%s: gRPC error without a Problem detail: %v", st.name, err)
			}
			if want := rpc.CodeOf(grpcOut.Code); uint32(s.Code()) != uint32(want) {
				t.Errorf("%s: gRPC code %v for %s, want %v", st.name, s.Code(), grpcOut.Code, want)
			}
		}
		if st.want != 0 {
			if r.Status != st.want {
				t.Errorf("%s: REST status %d, want %d", st.name, r.Status, st.want)
			}
			if got := status.Code(err); st.want < 400 && got != codes.OK || st.want >= 400 && got != st.wantGRPC {
				t.Errorf("%s: gRPC code %v, want %v", st.name, got, st.wantGRPC)
			}
		}
		t.Logf("%s: %+v", st.name, grpcOut)
		if strings.HasPrefix(restOut.Code, "idempotency_key") && restOut.Code == grpcOut.Code {
			// The detail names how the key travels: an HTTP header, or gRPC metadata.
			if !strings.Contains(grpcOut.Body, "idempotency-key metadata") || strings.Contains(grpcOut.Body, "header") {
				t.Errorf("%s: the gRPC detail does not name the idempotency-key metadata: %s", st.name, grpcOut.Body)
			}
			restOut.Body = detailRE.ReplaceAllString(restOut.Body, `"detail":"<transport's words>"`)
			grpcOut.Body = detailRE.ReplaceAllString(grpcOut.Body, `"detail":"<transport's words>"`)
		}
		if restOut.Code == "not_admitted" && grpcOut.Code == restOut.Code {
			// The detail says how to queue and where the token goes, in each transport's terms.
			if !strings.Contains(grpcOut.Body, "JoinWaitingRoom") || !strings.Contains(grpcOut.Body, "queue-ticket metadata") ||
				!strings.Contains(restOut.Body, "Queue-Ticket header") {
				t.Errorf("%s: a detail does not say how to queue in its transport's terms:\nREST: %s\ngRPC: %s", st.name, restOut.Body, grpcOut.Body)
			}
			restOut.Body = detailRE.ReplaceAllString(restOut.Body, `"detail":"<transport's words>"`)
			grpcOut.Body = detailRE.ReplaceAllString(grpcOut.Body, `"detail":"<transport's words>"`)
		}
		if restOut != grpcOut {
			t.Errorf("%s: answers differ\nREST: %+v\ngRPC: %+v", st.name, restOut, grpcOut)
		}
	}
}

// TestGRPCMetrics checks serve's wiring of the RPC metrics: RPCs that succeed and fail, made with
// grpc-go, show on the REST port's /metrics under their procedure and the code the client got,
// next to the HTTP and Go runtime metrics of the same registry.
func TestGRPCMetrics(t *testing.T) {
	srv := startServer(t, t.TempDir())
	clientKey := srv.newClientKey(t)
	conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(srv.URL, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	invoke := func(key, method string, req, resp proto.Message) error {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+key), 30*time.Second)
		defer cancel()
		return conn.Invoke(ctx, "/"+boxofficev1connect.BoxOfficeServiceName+"/"+method, req, resp)
	}
	hook := &pb.PutWebhookEndpointRequest{EndpointId: "m", Url: "https://hooks.example.com/m", EventTypes: []string{"hold.expired"}}
	for range 2 {
		if err := invoke(adminKey, "PutWebhookEndpoint", hook, &pb.PutWebhookEndpointResponse{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := invoke(clientKey, "PutWebhookEndpoint", hook, &pb.PutWebhookEndpointResponse{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("client key: %v", err)
	}
	if err := invoke(adminKey, "GetShow", &pb.GetShowRequest{ShowId: "nothing"}, &pb.GetShowResponse{}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown show: %v", err)
	}

	body := string(srv.client("").must(200, "GET", "/metrics", nil).Body)
	const svc = "/" + boxofficev1connect.BoxOfficeServiceName + "/"
	for _, want := range []string{
		`boxoffice_rpc_requests_total{code="ok",procedure="` + svc + `PutWebhookEndpoint"} 2`,
		`boxoffice_rpc_requests_total{code="permission_denied",procedure="` + svc + `PutWebhookEndpoint"} 1`,
		`boxoffice_rpc_requests_total{code="not_found",procedure="` + svc + `GetShow"} 1`,
		`boxoffice_rpc_duration_seconds_count{procedure="` + svc + `PutWebhookEndpoint"} 3`,
		`boxoffice_http_requests_total{code="201",route="POST /v1/api-keys"} 1`,
	} {
		if !strings.Contains(body, "\n"+want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(body, "\ngo_goroutines ") {
		t.Error("/metrics lost the Go runtime metrics")
	}
}

// requestFor is a new request message of a method.
func requestFor(t *testing.T, method string) proto.Message {
	t.Helper()
	switch method {
	case "PutShow":
		return &pb.PutShowRequest{}
	case "GetShow":
		return &pb.GetShowRequest{}
	case "CreateHold":
		return &pb.CreateHoldRequest{}
	case "GetHold":
		return &pb.GetHoldRequest{}
	case "ReleaseHold":
		return &pb.ReleaseHoldRequest{}
	case "ConfirmHold":
		return &pb.ConfirmHoldRequest{}
	case "Purchase":
		return &pb.PurchaseRequest{}
	case "CancelOrder":
		return &pb.CancelOrderRequest{}
	case "GetOrder":
		return &pb.GetOrderRequest{}
	case "ListOrders":
		return &pb.ListOrdersRequest{}
	case "PutWebhookEndpoint":
		return &pb.PutWebhookEndpointRequest{}
	case "GetWebhookEndpoint":
		return &pb.GetWebhookEndpointRequest{}
	case "ListWebhookEndpoints":
		return &pb.ListWebhookEndpointsRequest{}
	case "DeleteWebhookEndpoint":
		return &pb.DeleteWebhookEndpointRequest{}
	case "ListEvents":
		return &pb.ListEventsRequest{}
	case "CreateApiKey":
		return &pb.CreateApiKeyRequest{}
	case "ListApiKeys":
		return &pb.ListApiKeysRequest{}
	case "RevokeApiKey":
		return &pb.RevokeApiKeyRequest{}
	case "RotateWebhookSecret":
		return &pb.RotateWebhookSecretRequest{}
	case "PutWaitingRoom":
		return &pb.PutWaitingRoomRequest{}
	case "GetWaitingRoom":
		return &pb.GetWaitingRoomRequest{}
	case "DeleteWaitingRoom":
		return &pb.DeleteWaitingRoomRequest{}
	case "PauseWaitingRoom":
		return &pb.PauseWaitingRoomRequest{}
	case "JoinWaitingRoom":
		return &pb.JoinWaitingRoomRequest{}
	case "GetQueueTicket":
		return &pb.GetQueueTicketRequest{}
	}
	t.Fatalf("no request type for %s", method)
	return nil
}

// TestOneKeyAcrossTransports: a purchase sent over gRPC and then, with the same Idempotency-Key
// and the same request, over REST has one effect: REST answers the stored order (replayed), one
// order exists and one charge was made; the same key with another request is 422 on either.
func TestOneKeyAcrossTransports(t *testing.T) {
	srv := startServer(t, t.TempDir())
	clientKey := srv.newClientKey(t)
	srv.client(adminKey).must(201, "PUT", "/v1/shows/x", showBody(10, 600))
	conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(srv.URL, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(),
		"authorization", "Bearer "+clientKey, "idempotency-key", "one-key"), 30*time.Second)
	defer cancel()
	var out pb.PurchaseResponse
	req := &pb.PurchaseRequest{ShowId: "x", TierId: "ga", Quantity: 2, Buyer: &pb.Buyer{Email: "a@example.com"}, Payment: &pb.Payment{Token: "tok_ok"}}
	if err := conn.Invoke(ctx, "/"+boxofficev1connect.BoxOfficeServiceName+"/Purchase", req, &out); err != nil {
		t.Fatal(err)
	}
	cl := srv.client(clientKey)
	body := `{"show_id":"x","tier_id":"ga","quantity":2,"buyer":{"email":"a@example.com"},"payment":{"token":"tok_ok"}}`
	r := cl.must(201, "POST", "/v1/purchases", body, "Idempotency-Key", "one-key")
	if r.Header.Get("Idempotent-Replayed") != "true" || !strings.Contains(string(r.Body), out.GetOrder().GetId()) {
		t.Fatalf("REST with the gRPC request's key: %s (replayed %q); want the order %s replayed",
			r.Body, r.Header.Get("Idempotent-Replayed"), out.GetOrder().GetId())
	}
	if orders := string(cl.must(200, "GET", "/v1/orders?show_id=x", nil).Body); strings.Count(orders, `"id":"ord_`) != 1 {
		t.Fatalf("orders after one purchase sent twice: %s", orders)
	}
	if show := string(cl.must(200, "GET", "/v1/shows/x", nil).Body); !strings.Contains(show, `"sold":2`) {
		t.Fatalf("show after one purchase of 2 sent twice: %s", show)
	}
	other := strings.Replace(body, `"quantity":2`, `"quantity":3`, 1)
	cl.must(422, "POST", "/v1/purchases", other, "Idempotency-Key", "one-key")
	req.Quantity = 3
	if err := conn.Invoke(ctx, "/"+boxofficev1connect.BoxOfficeServiceName+"/Purchase", req, &out); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("gRPC with the key and another request: %v, want INVALID_ARGUMENT (idempotency_key_reused)", err)
	}
}

// TestRateLimitPerKey: with --rate-limit, a key past its budget gets 429 rate_limited with a
// Retry-After over REST and RESOURCE_EXHAUSTED over gRPC (one budget for both), and another key
// is unaffected.
func TestRateLimitPerKey(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--rate-limit", "0.1", "--rate-burst", "3") // a token per 10 s
	keyA, keyB := srv.newClientKey(t), srv.newClientKey(t)
	a := srv.client(keyA)
	for range 3 {
		a.must(404, "GET", "/v1/shows/none", nil)
	}
	r, err := a.do("GET", "/v1/shows/none", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 429 || r.code() != "rate_limited" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("past the burst: %d %s (Retry-After %q); want 429 rate_limited with Retry-After", r.Status, r.Body, r.Header.Get("Retry-After"))
	}
	srv.client(keyB).must(404, "GET", "/v1/shows/none", nil)

	conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(srv.URL, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+keyA), 30*time.Second)
	defer cancel()
	err = conn.Invoke(ctx, "/"+boxofficev1connect.BoxOfficeServiceName+"/GetShow", &pb.GetShowRequest{ShowId: "none"}, &pb.GetShowResponse{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("gRPC with the spent key: %v; want RESOURCE_EXHAUSTED", err)
	}
}
