package rpc_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"boxoffice"
	pb "boxoffice/gen/boxoffice/v1"
	"boxoffice/gen/boxoffice/v1/boxofficev1connect"
	bohttp "boxoffice/http"
	"boxoffice/inventory"
	"boxoffice/inventory/inventorytest"
	"boxoffice/payments"
	"boxoffice/rpc"
	"boxoffice/sale"
	"boxoffice/sqlite"
	"boxoffice/waitroom"
)

const admin = "adm"

// newServer serves REST and RPC on one h2c listener over a real service on SQLite.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv, _ := newServerAt(t, nil)
	return srv
}

// newServerAt is newServer on the clock now (nil: the real one), so that a test moves time past
// the seat map's cache instead of waiting for it, with the server's waiting rooms, which admit
// only when the test calls AdmitOnce.
func newServerAt(t *testing.T, now func() time.Time) (*httptest.Server, *waitroom.Service) {
	t.Helper()
	dir := t.TempDir()
	sim, err := payments.NewSim(payments.SimOptions{SlowDelay: time.Second, LedgerPath: dir + "/ledger.jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), dir+"/boxoffice.db")
	if err != nil {
		t.Fatal(err)
	}
	rooms, err := waitroom.New(context.Background(), waitroom.Config{Store: st, Now: now, AdmitEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rooms.Start(false)
	inv := inventory.NewAtomic(st)
	svc := sale.New(sale.Config{Store: st, Inventory: inv, Payments: sim, Renderer: bohttp.Renderer{},
		SyncBudget: 3 * time.Second, AdminKey: admin, Now: now, Admission: rooms.Admitted})
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// One registry for both transports, as serve wires them, so /metrics shows the RPC metrics.
	reg := prometheus.NewRegistry()
	h := rpc.Mount(rpc.NewHandler(svc, rpc.Options{Registry: reg, WaitRoom: rooms}),
		bohttp.NewHandler(svc, bohttp.Options{Registry: reg, WaitRoom: rooms}))
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		rooms.Close()
		svc.Close()
		inv.Close()
		st.Close()
		sim.Close()
	})
	return srv, rooms
}

// h2c is an HTTP client speaking HTTP/2 without TLS, as gRPC needs.
func h2c() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}, Timeout: 30 * time.Second}
}

// call is a request with the caller's key and, when given, an idempotency key.
func call[T any](msg *T, key, idem string) *connect.Request[T] {
	r := connect.NewRequest(msg)
	if key != "" {
		r.Header().Set("Authorization", "Bearer "+key)
	}
	if idem != "" {
		r.Header().Set("Idempotency-Key", idem)
	}
	return r
}

func showRequest(id string, capacity int32) *pb.PutShowRequest {
	return &pb.PutShowRequest{ShowId: id, Name: "Show", StartsAt: timestamppb.New(time.Date(2027, 5, 1, 19, 0, 0, 0, time.UTC)),
		Tiers: []*pb.TierInput{{Id: "ga", Name: "General", Capacity: &capacity, Price: &pb.Money{Amount: 2500, Currency: "EUR"}}}}
}

// wantProblem checks an error's gRPC code and its Problem detail's SPEC code.
func wantProblem(t *testing.T, err error, code connect.Code, spec string) *pb.Problem {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	p := rpc.ProblemOf(err)
	if p == nil || p.Code != spec {
		t.Fatalf("got problem %v, want code %s (%v)", p, spec, err)
	}
	return p
}

// TestConnectProtocols runs the operations over Connect (HTTP/1.1 and HTTP/2), gRPC and gRPC-Web
// (HTTP/1.1) with the generated client.
func TestConnectProtocols(t *testing.T) {
	srv := newServer(t)
	http1 := &http.Client{Timeout: 30 * time.Second}
	for _, proto := range []struct {
		name string
		hc   *http.Client
		opts []connect.ClientOption
	}{
		{"connect", http1, nil},
		{"connect-h2c", h2c(), nil},
		{"grpc", h2c(), []connect.ClientOption{connect.WithGRPC()}},
		{"grpcweb", http1, []connect.ClientOption{connect.WithGRPCWeb()}},
	} {
		t.Run(proto.name, func(t *testing.T) {
			ctx := context.Background()
			c := boxofficev1connect.NewBoxOfficeServiceClient(proto.hc, srv.URL, proto.opts...)
			show := "show-" + proto.name
			put, err := c.PutShow(ctx, call(showRequest(show, 3), admin, ""))
			if err != nil || !put.Msg.Created || put.Msg.Show.Tiers[0].Available != 3 {
				t.Fatalf("put show: %v %v", put, err)
			}
			key, err := c.CreateApiKey(ctx, call(&pb.CreateApiKeyRequest{Role: "client"}, admin, "k-"+proto.name))
			if err != nil || !strings.HasPrefix(key.Msg.Id, "key_") || key.Msg.Key == "" {
				t.Fatalf("api key: %v %v", key, err)
			}
			client := key.Msg.Key
			if _, err := c.PutShow(ctx, call(showRequest(show, 3), client, "")); err != nil {
				wantProblem(t, err, connect.CodePermissionDenied, "forbidden")
			} else {
				t.Fatal("client key put a show")
			}
			_, err = c.GetShow(ctx, call(&pb.GetShowRequest{ShowId: show}, "nope", ""))
			wantProblem(t, err, connect.CodeUnauthenticated, "unauthorized")

			hold, err := c.CreateHold(ctx, call(&pb.CreateHoldRequest{ShowId: show, TierId: "ga", Quantity: 2,
				Buyer: &pb.Buyer{Email: "a@example.com"}}, client, "h1"))
			if err != nil || hold.Msg.Hold.Status != "active" || !strings.HasPrefix(hold.Msg.Hold.Id, "hld_") {
				t.Fatalf("hold: %v %v", hold, err)
			}
			again, err := c.CreateHold(ctx, call(&pb.CreateHoldRequest{ShowId: show, TierId: "ga", Quantity: 2,
				Buyer: &pb.Buyer{Email: "a@example.com"}}, client, "h1"))
			if err != nil || again.Msg.Hold.Id != hold.Msg.Hold.Id || again.Header().Get("Idempotent-Replayed") != "true" {
				t.Fatalf("replay: %v %v", again, err)
			}
			_, err = c.CreateHold(ctx, call(&pb.CreateHoldRequest{ShowId: show, TierId: "ga", Quantity: 1,
				Buyer: &pb.Buyer{Email: "a@example.com"}}, client, "h1"))
			wantProblem(t, err, connect.CodeInvalidArgument, "idempotency_key_reused")
			_, err = c.CreateHold(ctx, call(&pb.CreateHoldRequest{ShowId: show, TierId: "ga", Quantity: 1,
				Buyer: &pb.Buyer{Email: "a@example.com"}}, client, ""))
			wantProblem(t, err, connect.CodeInvalidArgument, "idempotency_key_missing")
			_, err = c.CreateHold(ctx, call(&pb.CreateHoldRequest{ShowId: show, TierId: "ga", Quantity: 2,
				Buyer: &pb.Buyer{Email: "b@example.com"}}, client, "h2"))
			if p := wantProblem(t, err, connect.CodeFailedPrecondition, "sold_out"); p.Available == nil || *p.Available != 1 {
				t.Fatalf("sold out without available: %v", p)
			}
			_, err = c.CreateHold(ctx, call(&pb.CreateHoldRequest{ShowId: show, TierId: "ga", Quantity: 0,
				Buyer: &pb.Buyer{Email: "b@example.com"}}, client, "h3"))
			if p := wantProblem(t, err, connect.CodeInvalidArgument, "validation_failed"); len(p.Errors) == 0 {
				t.Fatalf("validation without errors: %v", p)
			}

			_, err = c.ConfirmHold(ctx, call(&pb.ConfirmHoldRequest{HoldId: hold.Msg.Hold.Id, Payment: &pb.Payment{Token: payments.TokenDeclined}}, client, "c1"))
			wantProblem(t, err, connect.CodeFailedPrecondition, "payment_declined")
			conf, err := c.ConfirmHold(ctx, call(&pb.ConfirmHoldRequest{HoldId: hold.Msg.Hold.Id, Payment: &pb.Payment{Token: payments.TokenOK}}, client, "c2"))
			if err != nil || conf.Msg.Order.Status != "confirmed" || len(conf.Msg.Order.Tickets) != 2 || conf.Msg.Order.Amount.Amount != 5000 {
				t.Fatalf("confirm: %v %v", conf, err)
			}
			_, err = c.ReleaseHold(ctx, call(&pb.ReleaseHoldRequest{HoldId: hold.Msg.Hold.Id}, client, ""))
			wantProblem(t, err, connect.CodeFailedPrecondition, "hold_confirmed")
			gh, err := c.GetHold(ctx, call(&pb.GetHoldRequest{HoldId: hold.Msg.Hold.Id}, client, ""))
			if err != nil || gh.Msg.Hold.Status != "confirmed" {
				t.Fatalf("get hold: %v %v", gh, err)
			}
			_, err = c.GetHold(ctx, call(&pb.GetHoldRequest{HoldId: "hld_nothing"}, client, ""))
			wantProblem(t, err, connect.CodeNotFound, "not_found")

			buy, err := c.Purchase(ctx, call(&pb.PurchaseRequest{ShowId: show, TierId: "ga", Quantity: 1,
				Buyer: &pb.Buyer{Email: "c@example.com"}, Payment: &pb.Payment{Token: payments.TokenOK}}, client, "p1"))
			if err != nil || buy.Msg.Order.Status != "confirmed" {
				t.Fatalf("purchase: %v %v", buy, err)
			}
			cancel, err := c.CancelOrder(ctx, call(&pb.CancelOrderRequest{OrderId: buy.Msg.Order.Id}, client, "x1"))
			if err != nil || cancel.Msg.Order.Status != "cancelled" {
				t.Fatalf("cancel: %v %v", cancel, err)
			}
			order, err := c.GetOrder(ctx, call(&pb.GetOrderRequest{OrderId: buy.Msg.Order.Id}, client, ""))
			if err != nil || order.Msg.Order.Status != "cancelled" {
				t.Fatalf("get order: %v %v", order, err)
			}
			orders, err := c.ListOrders(ctx, call(&pb.ListOrdersRequest{ShowId: show, Limit: 1}, client, ""))
			if err != nil || len(orders.Msg.Data) != 1 || orders.Msg.Next == "" {
				t.Fatalf("list orders: %v %v", orders, err)
			}
			shows, err := c.ListShows(ctx, call(&pb.ListShowsRequest{}, client, ""))
			if err != nil || len(shows.Msg.Data) == 0 {
				t.Fatalf("list shows: %v %v", shows, err)
			}
			_, err = c.ListShows(ctx, call(&pb.ListShowsRequest{Limit: 1000}, client, ""))
			wantProblem(t, err, connect.CodeInvalidArgument, "validation_failed")
			// The feed carries every channel's objects: the admin's only.
			_, err = c.ListEvents(ctx, call(&pb.ListEventsRequest{Limit: 100}, client, ""))
			wantProblem(t, err, connect.CodePermissionDenied, "forbidden")
			events, err := c.ListEvents(ctx, call(&pb.ListEventsRequest{Limit: 100}, admin, ""))
			if err != nil || len(events.Msg.Data) == 0 || events.Msg.Data[0].Data.GetFields()["id"] == nil {
				t.Fatalf("events: %v %v", events, err)
			}
		})
	}
}

// TestInFlightIsAborted sends a key while its first request is still paying.
func TestInFlightIsAborted(t *testing.T) {
	srv := newServer(t)
	ctx := context.Background()
	c := boxofficev1connect.NewBoxOfficeServiceClient(h2c(), srv.URL, connect.WithGRPC())
	if _, err := c.PutShow(ctx, call(showRequest("slow", 5), admin, "")); err != nil {
		t.Fatal(err)
	}
	req := &pb.PurchaseRequest{ShowId: "slow", TierId: "ga", Quantity: 1, Buyer: &pb.Buyer{Email: "a@example.com"},
		Payment: &pb.Payment{Token: payments.TokenSlow}}
	var wg sync.WaitGroup
	wg.Add(1)
	var first *connect.Response[pb.PurchaseResponse]
	var firstErr error
	go func() {
		defer wg.Done()
		first, firstErr = c.Purchase(ctx, call(req, admin, "slow-1"))
	}()
	deadline := time.Now().Add(900 * time.Millisecond)
	var err error
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		_, err = c.Purchase(ctx, call(req, admin, "slow-1"))
		if connect.CodeOf(err) == connect.CodeAborted {
			break
		}
	}
	p := wantProblem(t, err, connect.CodeAborted, "idempotency_request_in_progress")
	if p.Status != 409 {
		t.Fatalf("problem status %d", p.Status)
	}
	if !strings.Contains(p.Detail, "idempotency-key metadata") {
		t.Errorf("in-progress detail %q does not name the idempotency-key metadata", p.Detail)
	}
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Meta().Get("Retry-After") == "" {
		t.Fatalf("no retry-after: %v", err)
	}
	wg.Wait()
	if firstErr != nil || first.Msg.Order.Status != "confirmed" {
		t.Fatalf("first: %v %v", first, firstErr)
	}
}

// TestIdempotencyErrorsNameMetadata: over gRPC (grpc-go) every idempotency failure says what to
// fix in the terms of gRPC, idempotency-key metadata, never an HTTP header.
func TestIdempotencyErrorsNameMetadata(t *testing.T) {
	srv := newServer(t)
	conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(srv.URL, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	md := func(pairs ...string) context.Context {
		return metadata.NewOutgoingContext(ctx, metadata.Pairs(append([]string{"authorization", "Bearer " + admin}, pairs...)...))
	}
	const svc = "/" + boxofficev1connect.BoxOfficeServiceName + "/"
	var put pb.PutShowResponse
	if err := conn.Invoke(md(), svc+"PutShow", showRequest("m", 5), &put); err != nil {
		t.Fatal(err)
	}
	buy := &pb.PurchaseRequest{ShowId: "m", TierId: "ga", Quantity: 1, Buyer: &pb.Buyer{Email: "a@example.com"},
		Payment: &pb.Payment{Token: payments.TokenOK}}
	var out pb.PurchaseResponse
	if err := conn.Invoke(md("idempotency-key", "m1"), svc+"Purchase", buy, &out); err != nil {
		t.Fatal(err)
	}
	other := &pb.PurchaseRequest{ShowId: "m", TierId: "ga", Quantity: 2, Buyer: buy.Buyer, Payment: buy.Payment}
	for _, c := range []struct {
		name string
		ctx  context.Context
		req  *pb.PurchaseRequest
		code string
		want string
	}{
		{"missing", md(), buy, boxoffice.EIDEMMISSING, "needs idempotency-key metadata"},
		{"twice", md("idempotency-key", "a", "idempotency-key", "b"), buy, boxoffice.EIDEMINVALID, "idempotency-key metadata must be given once"},
		{"not visible ascii", md("idempotency-key", "a b"), buy, boxoffice.EIDEMINVALID, "idempotency-key metadata must be 1 to 255 visible ASCII"},
		{"bad quoted string", md("idempotency-key", `"open`), buy, boxoffice.EIDEMINVALID, "idempotency-key metadata is not a valid quoted string"},
		{"reused", md("idempotency-key", "m1"), other, boxoffice.EIDEMREUSED, "idempotency-key metadata was used with a different request"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := conn.Invoke(c.ctx, svc+"Purchase", c.req, &out)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), c.want) || strings.Contains(strings.ToLower(st.Message()), "header") {
				t.Fatalf("got %v %q, want INVALID_ARGUMENT saying %q", st.Code(), st.Message(), c.want)
			}
			var p *pb.Problem
			for _, d := range st.Details() {
				if pp, ok := d.(*pb.Problem); ok {
					p = pp
				}
			}
			if p == nil || p.Code != c.code || p.Detail != st.Message() {
				t.Fatalf("problem %v; want %s with the message as detail", p, c.code)
			}
		})
	}
}

// TestGRPCGo talks to the server with grpc-go over HTTP/2: the service, health and reflection.
func TestGRPCGo(t *testing.T) {
	srv := newServer(t)
	conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(srv.URL, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	md := func(pairs ...string) context.Context {
		return metadata.NewOutgoingContext(ctx, metadata.Pairs(append([]string{"authorization", "Bearer " + admin}, pairs...)...))
	}
	const svc = "/" + boxofficev1connect.BoxOfficeServiceName + "/"

	var put pb.PutShowResponse
	if err := conn.Invoke(md(), svc+"PutShow", showRequest("g", 1), &put); err != nil || !put.Created {
		t.Fatalf("put: %v %v", &put, err)
	}
	buy := &pb.PurchaseRequest{ShowId: "g", TierId: "ga", Quantity: 1, Buyer: &pb.Buyer{Email: "a@example.com"},
		Payment: &pb.Payment{Token: payments.TokenOK}}
	var out pb.PurchaseResponse
	var header metadata.MD
	if err := conn.Invoke(md("idempotency-key", "g1"), svc+"Purchase", buy, &out, grpc.Header(&header)); err != nil || out.Order.Status != "confirmed" {
		t.Fatalf("purchase: %v %v", &out, err)
	}
	if len(header.Get("idempotent-replayed")) != 0 {
		t.Fatal("first answer marked replayed")
	}
	var replay pb.PurchaseResponse
	if err := conn.Invoke(md("idempotency-key", "g1"), svc+"Purchase", buy, &replay, grpc.Header(&header)); err != nil ||
		replay.Order.Id != out.Order.Id || strings.Join(header.Get("idempotent-replayed"), "") != "true" {
		t.Fatalf("replay: %v %v %v", &replay, header, err)
	}
	err = conn.Invoke(md("idempotency-key", "g2"), svc+"Purchase", buy, &out)
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("sold out: %v", err)
	}
	var problem *pb.Problem
	for _, d := range st.Details() {
		if p, ok := d.(*pb.Problem); ok {
			problem = p
		}
	}
	if problem == nil || problem.Code != boxoffice.ESOLDOUT || problem.Status != 409 {
		t.Fatalf("details: %v", st.Details())
	}
	buy.Quantity = 2
	if err := conn.Invoke(md("idempotency-key", "g1"), svc+"Purchase", buy, &out); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("reused key: %v", err)
	}

	hc := healthpb.NewHealthClient(conn)
	for _, name := range []string{"", boxofficev1connect.BoxOfficeServiceName} {
		res, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
		if err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v %v", name, res, err)
		}
	}

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range res.GetListServicesResponse().GetService() {
		found = found || s.Name == boxofficev1connect.BoxOfficeServiceName
	}
	if !found {
		t.Fatalf("reflection lists %v", res)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{
		FileContainingSymbol: boxofficev1connect.BoxOfficeServiceName}}); err != nil {
		t.Fatal(err)
	}
	if res, err := stream.Recv(); err != nil || len(res.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("file containing symbol: %v %v", res, err)
	}
	_ = stream.CloseSend()
}

// TestCodeTable checks that every code REST knows has a gRPC code chosen for it.
func TestCodeTable(t *testing.T) {
	for _, code := range []string{boxoffice.ESOLDOUT, boxoffice.EIDEMREUSED, boxoffice.EIDEMINPROGRESS, boxoffice.EVALIDATION,
		boxoffice.ENOTFOUND, boxoffice.EUNAUTHORIZED, boxoffice.EFORBIDDEN, boxoffice.EOVERLOADED} {
		if rpc.CodeOf(code) == connect.CodeInternal {
			t.Errorf("%s maps to internal", code)
		}
	}
	if rpc.CodeOf(boxoffice.EIDEMREUSED) != connect.CodeInvalidArgument || rpc.CodeOf(boxoffice.EIDEMINPROGRESS) != connect.CodeAborted {
		t.Error("idempotency codes are not as the issue asks")
	}
	if rpc.CodeOf("no_such_code") != connect.CodeInternal {
		t.Error("unknown code is not internal")
	}
}

// TestWebhookEndpoints manages webhook endpoints with the generated client over gRPC: the answers
// and failures REST gives (http/webhooks.go), admin only.
func TestWebhookEndpoints(t *testing.T) {
	srv := newServer(t)
	ctx := context.Background()
	c := boxofficev1connect.NewBoxOfficeServiceClient(h2c(), srv.URL, connect.WithGRPC())
	hook := func(id, url string, types ...string) *pb.PutWebhookEndpointRequest {
		return &pb.PutWebhookEndpointRequest{EndpointId: id, Url: url, EventTypes: types}
	}

	put, err := c.PutWebhookEndpoint(ctx, call(hook("partner", "https://hooks.example.com/a", "order.confirmed"), admin, ""))
	if err != nil || !put.Msg.Created {
		t.Fatalf("put: %v %v", put, err)
	}
	w := put.Msg.WebhookEndpoint
	if w.Id != "partner" || w.Url != "https://hooks.example.com/a" || w.Status != "enabled" ||
		!strings.HasPrefix(w.Secret, boxoffice.WebhookSecretPrefix) || w.CreatedAt == nil || len(w.EventTypes) != 1 {
		t.Fatalf("put answered %v", w)
	}
	// A replacement is not created, keeps the secret (a partner's verifier keeps working) and
	// takes the new URL; "*" alone stands for every event type, and is kept as "*" so that the
	// types added later are in it too.
	again, err := c.PutWebhookEndpoint(ctx, call(hook("partner", "https://hooks.example.com/b", "*"), admin, ""))
	if err != nil || again.Msg.Created || again.Msg.WebhookEndpoint.Secret != w.Secret ||
		again.Msg.WebhookEndpoint.Url != "https://hooks.example.com/b" || !slices.Equal(again.Msg.WebhookEndpoint.EventTypes, []string{"*"}) {
		t.Fatalf("replace: %v %v", again, err)
	}
	got, err := c.GetWebhookEndpoint(ctx, call(&pb.GetWebhookEndpointRequest{EndpointId: "partner"}, admin, ""))
	if err != nil || got.Msg.WebhookEndpoint.Url != "https://hooks.example.com/b" || got.Msg.WebhookEndpoint.Secret != w.Secret {
		t.Fatalf("get: %v %v", got, err)
	}
	if _, err := c.PutWebhookEndpoint(ctx, call(hook("other", "https://hooks.example.com/c", "hold.created"), admin, "")); err != nil {
		t.Fatal(err)
	}
	list, err := c.ListWebhookEndpoints(ctx, call(&pb.ListWebhookEndpointsRequest{}, admin, ""))
	if err != nil || len(list.Msg.Data) != 2 || list.Msg.Data[0].Id != "other" || list.Msg.Data[1].Id != "partner" {
		t.Fatalf("list: %v %v", list, err)
	}

	for _, tc := range []struct {
		name  string
		req   *pb.PutWebhookEndpointRequest
		field string
	}{
		{"loopback url", hook("bad", "http://127.0.0.1:9/hook", "order.confirmed"), "url"},
		{"not http", hook("bad", "ftp://hooks.example.com/", "order.confirmed"), "url"},
		{"no url", hook("bad", "", "order.confirmed"), "url"},
		{"no event types", hook("bad", "https://hooks.example.com/"), "event_types"},
		{"unknown event type", hook("bad", "https://hooks.example.com/", "order.shipped"), "event_types[0]"},
		{"bad id", hook("Bad ID", "https://hooks.example.com/", "order.confirmed"), "endpoint_id"},
	} {
		_, err := c.PutWebhookEndpoint(ctx, call(tc.req, admin, ""))
		p := wantProblem(t, err, connect.CodeInvalidArgument, "validation_failed")
		if len(p.Errors) == 0 || p.Errors[0].Field != tc.field || p.Status != 400 {
			t.Errorf("%s: problem %v, want field %s", tc.name, p, tc.field)
		}
	}
	if _, err := c.GetWebhookEndpoint(ctx, call(&pb.GetWebhookEndpointRequest{EndpointId: "bad"}, admin, "")); err == nil {
		t.Fatal("a refused put stored an endpoint")
	}

	key, err := c.CreateApiKey(ctx, call(&pb.CreateApiKeyRequest{Role: "client"}, admin, "k1"))
	if err != nil {
		t.Fatal(err)
	}
	client := key.Msg.Key
	_, err = c.PutWebhookEndpoint(ctx, call(hook("mine", "https://hooks.example.com/", "order.confirmed"), client, ""))
	wantProblem(t, err, connect.CodePermissionDenied, "forbidden")
	_, err = c.GetWebhookEndpoint(ctx, call(&pb.GetWebhookEndpointRequest{EndpointId: "partner"}, client, ""))
	wantProblem(t, err, connect.CodePermissionDenied, "forbidden")
	_, err = c.ListWebhookEndpoints(ctx, call(&pb.ListWebhookEndpointsRequest{}, client, ""))
	wantProblem(t, err, connect.CodePermissionDenied, "forbidden")
	_, err = c.DeleteWebhookEndpoint(ctx, call(&pb.DeleteWebhookEndpointRequest{EndpointId: "partner"}, client, ""))
	wantProblem(t, err, connect.CodePermissionDenied, "forbidden")
	_, err = c.ListWebhookEndpoints(ctx, call(&pb.ListWebhookEndpointsRequest{}, "", ""))
	wantProblem(t, err, connect.CodeUnauthenticated, "unauthorized")

	// Delete is idempotent, as REST's 204 twice; a bad id is not found, never a validation error.
	for i := range 2 {
		if _, err := c.DeleteWebhookEndpoint(ctx, call(&pb.DeleteWebhookEndpointRequest{EndpointId: "partner"}, admin, "")); err != nil {
			t.Fatalf("delete %d: %v", i, err)
		}
	}
	_, err = c.GetWebhookEndpoint(ctx, call(&pb.GetWebhookEndpointRequest{EndpointId: "partner"}, admin, ""))
	wantProblem(t, err, connect.CodeNotFound, "not_found")
	_, err = c.GetWebhookEndpoint(ctx, call(&pb.GetWebhookEndpointRequest{EndpointId: "Not Valid"}, admin, ""))
	wantProblem(t, err, connect.CodeNotFound, "not_found")
	_, err = c.DeleteWebhookEndpoint(ctx, call(&pb.DeleteWebhookEndpointRequest{EndpointId: "Not Valid"}, admin, ""))
	wantProblem(t, err, connect.CodeNotFound, "not_found")
	list, err = c.ListWebhookEndpoints(ctx, call(&pb.ListWebhookEndpointsRequest{}, admin, ""))
	if err != nil || len(list.Msg.Data) != 1 || list.Msg.Data[0].Id != "other" {
		t.Fatalf("list after delete: %v %v", list, err)
	}
}

// TestMetrics makes RPCs that succeed and fail and reads /metrics, served by the REST handler on
// the same port: each RPC is counted under its procedure and the code its client got, and timed.
func TestMetrics(t *testing.T) {
	srv := newServer(t)
	ctx := context.Background()
	c := boxofficev1connect.NewBoxOfficeServiceClient(h2c(), srv.URL, connect.WithGRPC())
	if _, err := c.PutShow(ctx, call(showRequest("m", 1), admin, "")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.GetShow(ctx, call(&pb.GetShowRequest{ShowId: "m"}, admin, "")); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.GetShow(ctx, call(&pb.GetShowRequest{ShowId: "nothing"}, admin, ""))
	wantProblem(t, err, connect.CodeNotFound, "not_found")
	_, err = c.GetShow(ctx, call(&pb.GetShowRequest{ShowId: "m"}, "nope", ""))
	wantProblem(t, err, connect.CodeUnauthenticated, "unauthorized")
	_, err = c.CreateHold(ctx, call(&pb.CreateHoldRequest{ShowId: "m", TierId: "ga", Quantity: 2,
		Buyer: &pb.Buyer{Email: "a@example.com"}}, admin, "m1"))
	wantProblem(t, err, connect.CodeFailedPrecondition, "sold_out")
	conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(srv.URL, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	const svc = "/" + boxofficev1connect.BoxOfficeServiceName + "/"
	for _, want := range []string{
		`boxoffice_rpc_requests_total{code="ok",procedure="` + svc + `PutShow"} 1`,
		`boxoffice_rpc_requests_total{code="ok",procedure="` + svc + `GetShow"} 2`,
		`boxoffice_rpc_requests_total{code="not_found",procedure="` + svc + `GetShow"} 1`,
		`boxoffice_rpc_requests_total{code="unauthenticated",procedure="` + svc + `GetShow"} 1`,
		`boxoffice_rpc_requests_total{code="failed_precondition",procedure="` + svc + `CreateHold"} 1`,
		`boxoffice_rpc_requests_total{code="ok",procedure="/grpc.health.v1.Health/Check"} 1`,
		`boxoffice_rpc_duration_seconds_count{procedure="` + svc + `GetShow"} 4`,
		`boxoffice_rpc_duration_seconds_count{procedure="` + svc + `CreateHold"} 1`,
	} {
		if !strings.Contains(string(b), "\n"+want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The REST side's metrics are in the same registry, and RPCs are not counted there: this scrape
	// is the first HTTP request, and it is counted only once it has been answered.
	if !strings.Contains(string(b), "\nboxoffice_http_requests_in_flight ") {
		t.Error("/metrics lacks the HTTP metrics")
	}
	if strings.Contains(string(b), "boxoffice_http_requests_total{") {
		t.Errorf("RPCs were counted as HTTP requests:\n%s", b)
	}
}

// TestAPIKeyLifeCycle: over gRPC as over REST, a key's secret is in the first answer only, keys
// list without secrets (a never-used key without last_used_at), a revoked key is unauthenticated
// from then on, and another client key is refused a channel's hold.
func TestAPIKeyLifeCycle(t *testing.T) {
	srv := newServer(t)
	ctx := context.Background()
	c := boxofficev1connect.NewBoxOfficeServiceClient(h2c(), srv.URL, connect.WithGRPC())
	first, err := c.CreateApiKey(ctx, call(&pb.CreateApiKeyRequest{Role: "client", Label: "shop"}, admin, "k1"))
	if err != nil || !strings.HasPrefix(first.Msg.Key, "bo_") || first.Msg.Label != "shop" {
		t.Fatalf("create: %v %v", first, err)
	}
	again, err := c.CreateApiKey(ctx, call(&pb.CreateApiKeyRequest{Role: "client", Label: "shop"}, admin, "k1"))
	if err != nil || again.Msg.Id != first.Msg.Id || again.Msg.Key != "" || again.Header().Get(rpc.HeaderReplayed) != "true" {
		t.Fatalf("replay: %v %v; want id %s without the key", again, err, first.Msg.Id)
	}
	other, err := c.CreateApiKey(ctx, call(&pb.CreateApiKeyRequest{Role: "client"}, admin, "k2"))
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.ListApiKeys(ctx, call(&pb.ListApiKeysRequest{Limit: 1}, admin, ""))
	if err != nil || len(list.Msg.Data) != 1 || list.Msg.Next == "" {
		t.Fatalf("list: %v %v", list, err)
	}
	if k := list.Msg.Data[0]; k.LastUsedAt != nil || k.RevokedAt != nil || k.CreatedAt == nil {
		t.Errorf("a new key listed as %v; want no last use, not revoked", k)
	}
	_, err = c.ListApiKeys(ctx, call(&pb.ListApiKeysRequest{}, first.Msg.Key, ""))
	wantProblem(t, err, connect.CodePermissionDenied, "forbidden")

	if _, err := c.PutShow(ctx, call(showRequest("keys", 10), admin, "")); err != nil {
		t.Fatal(err)
	}
	hold, err := c.CreateHold(ctx, call(&pb.CreateHoldRequest{ShowId: "keys", TierId: "ga", Quantity: 1,
		Buyer: &pb.Buyer{Email: "a@example.com"}}, first.Msg.Key, "h1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetHold(ctx, call(&pb.GetHoldRequest{HoldId: hold.Msg.Hold.Id}, other.Msg.Key, ""))
	wantProblem(t, err, connect.CodeNotFound, "not_found")
	_, err = c.ReleaseHold(ctx, call(&pb.ReleaseHoldRequest{HoldId: hold.Msg.Hold.Id}, other.Msg.Key, ""))
	wantProblem(t, err, connect.CodeNotFound, "not_found")
	if got, err := c.GetHold(ctx, call(&pb.GetHoldRequest{HoldId: hold.Msg.Hold.Id}, admin, "")); err != nil || got.Msg.Hold.Status != "active" {
		t.Fatalf("the admin's view of the hold: %v %v", got, err)
	}

	if _, err := c.RevokeApiKey(ctx, call(&pb.RevokeApiKeyRequest{KeyId: first.Msg.Id}, admin, "")); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetHold(ctx, call(&pb.GetHoldRequest{HoldId: hold.Msg.Hold.Id}, first.Msg.Key, ""))
	wantProblem(t, err, connect.CodeUnauthenticated, "unauthorized")
	if _, err := c.RevokeApiKey(ctx, call(&pb.RevokeApiKeyRequest{KeyId: first.Msg.Id}, admin, "")); err != nil {
		t.Errorf("revoke again: %v", err)
	}
	_, err = c.RevokeApiKey(ctx, call(&pb.RevokeApiKeyRequest{KeyId: "key_nothing"}, admin, ""))
	wantProblem(t, err, connect.CodeNotFound, "not_found")
}

// TestStrictMessages: a JSON request with an unknown field is refused, as REST refuses one, and
// no error names a Go type of the server (connect's own codecs say "unmarshal into
// *boxofficev1.…").
func TestStrictMessages(t *testing.T) {
	srv := newServer(t)
	post := func(ctype, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("POST", srv.URL+"/boxoffice.v1.BoxOfficeService/GetShow", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct{ ctype, body, want string }{
		{"application/json", `{"show_id":"gala","bogus":1}`, "bogus"},
		{"application/json; charset=utf-8", `{"show_id":"gala","bogus":1}`, "bogus"},
		{"application/json", `{"show_id":`, ""},
		{"application/proto", "\xff\xff\xff", ""},
	} {
		status, body := post(c.ctype, c.body)
		if status != http.StatusBadRequest || !strings.Contains(body, `"invalid_argument"`) || !strings.Contains(body, c.want) {
			t.Errorf("%s %q: %d %s; want 400 invalid_argument naming %q", c.ctype, c.body, status, body, c.want)
		}
		if strings.Contains(body, "boxofficev1") || strings.Contains(body, "*") {
			t.Errorf("%s %q: the error names a Go type: %s", c.ctype, c.body, body)
		}
	}
	if status, body := post("application/json", `{"show_id":"gala"}`); status != http.StatusNotFound {
		t.Errorf("a well-formed request: %d %s; want the service's 404", status, body)
	}
}

// TestOversizeMessageIsPayloadTooLarge: a message past 64 KiB is refused with the same problem as
// a REST body past it, in the caller's protocol.
func TestOversizeMessageIsPayloadTooLarge(t *testing.T) {
	srv := newServer(t)
	c := boxofficev1connect.NewBoxOfficeServiceClient(srv.Client(), srv.URL)
	_, err := c.GetShow(context.Background(), call(&pb.GetShowRequest{ShowId: strings.Repeat("x", 70_000)}, admin, ""))
	p := wantProblem(t, err, connect.CodeResourceExhausted, boxoffice.EPAYLOADTOOLARGE)
	if p.GetStatus() != 413 {
		t.Errorf("problem %v; want status 413", p)
	}
}

// seatedShow is a show whose one tier sells seats: row A of 6 seats, 1 accessible, and row B of
// labelled seats, 103 with a restricted view.
func seatedShow(id string) *pb.PutShowRequest {
	return &pb.PutShowRequest{ShowId: id, Name: "Recital", StartsAt: timestamppb.New(time.Date(2027, 5, 1, 19, 0, 0, 0, time.UTC)),
		Tiers: []*pb.TierInput{{Id: "stalls", Name: "Stalls", Price: &pb.Money{Amount: 6000, Currency: "EUR"},
			SeatMap: &pb.SeatMapInput{Sections: []*pb.SeatSectionInput{{Id: "S", Rows: []*pb.SeatRowInput{
				{Id: "A", Seats: 6, Accessible: []string{"1"}},
				{Id: "B", Labels: []string{"101", "102", "103"}, RestrictedView: []string{"103"}},
			}}}}}}}
}

// TestSeats sells named seats and the best available over gRPC, as REST sells them: the seat map
// with its etag and not_modified, all-or-none holds refused with seat_unavailable, and tickets
// that name their seats.
func TestSeats(t *testing.T) {
	clock := inventorytest.NewClock()
	srv, _ := newServerAt(t, clock.Now)
	ctx := context.Background()
	c := boxofficev1connect.NewBoxOfficeServiceClient(h2c(), srv.URL, connect.WithGRPC())

	put, err := c.PutShow(ctx, call(seatedShow("recital"), admin, ""))
	if err != nil {
		t.Fatal(err)
	}
	if tier := put.Msg.Show.Tiers[0]; !tier.Seated || tier.Capacity != 9 || tier.Available != 9 {
		t.Fatalf("seated tier answered %v; want seated, capacity 9", tier)
	}
	// The map is validated as REST validates it, with the same field names.
	bad := seatedShow("bad")
	bad.Tiers[0].SeatMap.Sections[0].Rows[1].RestrictedView = []string{"104"}
	_, err = c.PutShow(ctx, call(bad, admin, ""))
	if p := wantProblem(t, err, connect.CodeInvalidArgument, "validation_failed"); len(p.Errors) != 1 ||
		p.Errors[0].Field != "tiers[0].seat_map.sections[0].rows[1].restricted_view" {
		t.Fatalf("bad map: %v", p)
	}
	bad.Tiers[0].SeatMap = &pb.SeatMapInput{}
	_, err = c.PutShow(ctx, call(bad, admin, ""))
	if p := wantProblem(t, err, connect.CodeInvalidArgument, "validation_failed"); len(p.Errors) != 1 ||
		p.Errors[0].Field != "tiers[0].seat_map.sections" {
		t.Fatalf("empty map: %v", p)
	}
	key, err := c.CreateApiKey(ctx, call(&pb.CreateApiKeyRequest{Role: "client"}, admin, "k1"))
	if err != nil {
		t.Fatal(err)
	}
	client := key.Msg.Key

	seats, err := c.GetShowSeats(ctx, call(&pb.GetShowSeatsRequest{ShowId: "recital"}, client, ""))
	if err != nil {
		t.Fatal(err)
	}
	m := seats.Msg
	if m.NotModified || m.Etag == "" || m.ShowId != "recital" || m.At == nil || len(m.Seats) != 9 {
		t.Fatalf("seat map: %v", m)
	}
	if s := m.Seats[0]; s.Id != "S-A-1" || s.TierId != "stalls" || s.Section != "S" || s.Row != "A" || s.Label != "1" ||
		!s.Accessible || s.RestrictedView || s.State != "available" {
		t.Fatalf("first seat %v", s)
	}
	if s := m.Seats[8]; s.Id != "S-B-103" || !s.RestrictedView || s.Accessible {
		t.Fatalf("last seat %v", s)
	}
	same, err := c.GetShowSeats(ctx, call(&pb.GetShowSeatsRequest{ShowId: "recital", IfNoneMatch: m.Etag}, client, ""))
	if err != nil || !same.Msg.NotModified || same.Msg.Etag != m.Etag || len(same.Msg.Seats) != 0 || same.Msg.ShowId != "" {
		t.Fatalf("if_none_match the current etag: %v %v; want not_modified with the etag only", same, err)
	}
	// The list, weak and wildcard forms REST's If-None-Match takes.
	for _, inm := range []string{`"other", ` + m.Etag, "W/" + m.Etag, "*"} {
		if r, err := c.GetShowSeats(ctx, call(&pb.GetShowSeatsRequest{ShowId: "recital", IfNoneMatch: inm}, client, "")); err != nil || !r.Msg.NotModified {
			t.Errorf("if_none_match %s: %v %v; want not_modified", inm, r, err)
		}
	}
	other, err := c.GetShowSeats(ctx, call(&pb.GetShowSeatsRequest{ShowId: "recital", IfNoneMatch: `"other"`}, client, ""))
	if err != nil || other.Msg.NotModified || len(other.Msg.Seats) != 9 {
		t.Fatalf("if_none_match another etag: %v %v; want the map", other, err)
	}
	_, err = c.GetShowSeats(ctx, call(&pb.GetShowSeatsRequest{ShowId: "nothing"}, client, ""))
	wantProblem(t, err, connect.CodeNotFound, "not_found")
	_, err = c.GetShowSeats(ctx, call(&pb.GetShowSeatsRequest{ShowId: "recital"}, "nope", ""))
	wantProblem(t, err, connect.CodeUnauthenticated, "unauthorized")

	named := &pb.CreateHoldRequest{ShowId: "recital", TierId: "stalls", Seats: []string{"S-A-3", "S-A-4"},
		Buyer: &pb.Buyer{Email: "ann@example.com"}}
	hold, err := c.CreateHold(ctx, call(named, client, "h1"))
	if err != nil || hold.Msg.Hold.Quantity != 2 || !slices.Equal(hold.Msg.Hold.Seats, []string{"S-A-3", "S-A-4"}) {
		t.Fatalf("named seats: %v %v", hold, err)
	}
	again, err := c.CreateHold(ctx, call(named, client, "h1"))
	if err != nil || again.Header().Get(rpc.HeaderReplayed) != "true" || !slices.Equal(again.Msg.Hold.Seats, hold.Msg.Hold.Seats) {
		t.Fatalf("replay: %v %v", again, err)
	}
	// One key, one effect, whichever transport: the same seats sent over REST with the key are
	// the same request, answered from the stored hold.
	rest, err := http.NewRequest("POST", srv.URL+"/v1/shows/recital/holds",
		strings.NewReader(`{"tier_id":"stalls","seats":["S-A-3","S-A-4"],"buyer":{"email":"ann@example.com"}}`))
	if err != nil {
		t.Fatal(err)
	}
	rest.Header.Set("Content-Type", "application/json")
	rest.Header.Set("Authorization", "Bearer "+client)
	rest.Header.Set("Idempotency-Key", "h1")
	resp, err := srv.Client().Do(rest)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "true" || !strings.Contains(string(body), hold.Msg.Hold.Id) {
		t.Fatalf("the same seats over REST: %d %s; want the stored hold %s", resp.StatusCode, body, hold.Msg.Hold.Id)
	}
	// All or none: S-A-5 is free, S-A-4 is not, so neither is held.
	_, err = c.CreateHold(ctx, call(&pb.CreateHoldRequest{ShowId: "recital", TierId: "stalls", Seats: []string{"S-A-4", "S-A-5"},
		Buyer: &pb.Buyer{Email: "bo@example.com"}}, client, "h2"))
	p := wantProblem(t, err, connect.CodeFailedPrecondition, boxoffice.ESEATUNAVAILABLE)
	if p.Status != 409 || !strings.Contains(p.Detail, "S-A-4") || strings.Contains(p.Detail, "S-A-5") {
		t.Fatalf("seat_unavailable problem %v; want 409 naming S-A-4 only", p)
	}
	_, err = c.CreateHold(ctx, call(&pb.CreateHoldRequest{ShowId: "recital", TierId: "stalls", Seats: []string{"S-Z-1"},
		Buyer: &pb.Buyer{Email: "bo@example.com"}}, client, "h3"))
	if p := wantProblem(t, err, connect.CodeInvalidArgument, "validation_failed"); len(p.Errors) == 0 || p.Errors[0].Field != "seats" {
		t.Fatalf("unknown seat: %v", p)
	}

	// The best two available: not the accessible S-A-1 (left for those who name it), and side
	// by side, so S-A-5 and S-A-6 (exactly two free there) before S-A-1/S-A-2.
	best, err := c.CreateHold(ctx, call(&pb.CreateHoldRequest{ShowId: "recital", TierId: "stalls", Quantity: 2,
		Buyer: &pb.Buyer{Email: "cy@example.com"}}, client, "h4"))
	if err != nil || !slices.Equal(best.Msg.Hold.Seats, []string{"S-A-5", "S-A-6"}) {
		t.Fatalf("best available: %v %v", best, err)
	}
	got, err := c.GetHold(ctx, call(&pb.GetHoldRequest{HoldId: best.Msg.Hold.Id}, client, ""))
	if err != nil || !slices.Equal(got.Msg.Hold.Seats, best.Msg.Hold.Seats) {
		t.Fatalf("get hold: %v %v", got, err)
	}

	buy, err := c.Purchase(ctx, call(&pb.PurchaseRequest{ShowId: "recital", TierId: "stalls", Seats: []string{"S-B-101", "S-B-102"},
		Buyer: &pb.Buyer{Email: "di@example.com"}, Payment: &pb.Payment{Token: payments.TokenOK}}, client, "p1"))
	if err != nil || buy.Msg.Order.Status != "confirmed" || len(buy.Msg.Order.Tickets) != 2 {
		t.Fatalf("purchase: %v %v", buy, err)
	}
	var ticketSeats []string
	for _, tk := range buy.Msg.Order.Tickets {
		ticketSeats = append(ticketSeats, tk.Seat)
	}
	if slices.Sort(ticketSeats); !slices.Equal(ticketSeats, []string{"S-B-101", "S-B-102"}) {
		t.Fatalf("tickets name seats %v", ticketSeats)
	}
	_, err = c.Purchase(ctx, call(&pb.PurchaseRequest{ShowId: "recital", TierId: "stalls", Seats: []string{"S-B-102"},
		Buyer: &pb.Buyer{Email: "ed@example.com"}, Payment: &pb.Payment{Token: payments.TokenOK}}, client, "p2"))
	wantProblem(t, err, connect.CodeFailedPrecondition, boxoffice.ESEATUNAVAILABLE)

	// Past the map's cache, the map shows what was held and sold, under a new etag.
	clock.Advance(time.Second)
	after, err := c.GetShowSeats(ctx, call(&pb.GetShowSeatsRequest{ShowId: "recital", IfNoneMatch: m.Etag}, client, ""))
	if err != nil || after.Msg.NotModified || after.Msg.Etag == m.Etag {
		t.Fatalf("map after the sale: %v %v; want a new etag", after, err)
	}
	state := map[string]string{}
	for _, s := range after.Msg.Seats {
		state[s.Id] = s.State
	}
	for id, want := range map[string]string{"S-A-1": "available", "S-A-3": "held", "S-A-4": "held", "S-A-5": "held",
		"S-A-6": "held", "S-B-101": "sold", "S-B-102": "sold", "S-B-103": "available"} {
		if state[id] != want {
			t.Errorf("seat %s is %q, want %s", id, state[id], want)
		}
	}
}

// TestWaitingRoom runs a waiting room over gRPC with REST's roles and answers: the admin puts it,
// a buyer joins and reads their ticket, a hold without an admitted queue ticket is refused with
// not_admitted, and the admitted token in queue-ticket metadata (REST's Queue-Ticket header)
// opens holds and purchases for its buyer until the admission runs out.
func TestWaitingRoom(t *testing.T) {
	clock := inventorytest.NewClock()
	srv, rooms := newServerAt(t, clock.Now)
	ctx := context.Background()
	c := boxofficev1connect.NewBoxOfficeServiceClient(h2c(), srv.URL, connect.WithGRPC())
	if _, err := c.PutShow(ctx, call(showRequest("gala", 10), admin, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutShow(ctx, call(showRequest("open", 10), admin, "")); err != nil {
		t.Fatal(err)
	}
	key, err := c.CreateApiKey(ctx, call(&pb.CreateApiKeyRequest{Role: "client"}, admin, "k1"))
	if err != nil {
		t.Fatal(err)
	}
	client := key.Msg.Key
	withTicket := func(r *connect.Request[pb.CreateHoldRequest], token string) *connect.Request[pb.CreateHoldRequest] {
		r.Header().Set(waitroom.HeaderTicket, token)
		return r
	}
	hold := func(email string) *pb.CreateHoldRequest {
		return &pb.CreateHoldRequest{ShowId: "gala", TierId: "ga", Quantity: 1, Buyer: &pb.Buyer{Email: email}}
	}

	onSale := clock.Now().Add(time.Minute)
	room := &pb.PutWaitingRoomRequest{ShowId: "gala", OpensAt: timestamppb.New(onSale), AdmitPerSecond: waitroom.MaxAdmitPerSecond}
	_, err = c.GetWaitingRoom(ctx, call(&pb.GetWaitingRoomRequest{ShowId: "gala"}, client, ""))
	wantProblem(t, err, connect.CodeNotFound, "not_found")
	// The room's settings are the admin's, as in REST.
	_, err = c.PutWaitingRoom(ctx, call(room, client, ""))
	wantProblem(t, err, connect.CodePermissionDenied, "forbidden")
	put, err := c.PutWaitingRoom(ctx, call(room, admin, ""))
	if err != nil || !put.Msg.Created {
		t.Fatalf("put room: %v %v", put, err)
	}
	if w := put.Msg.WaitingRoom; w.ShowId != "gala" || !w.OpensAt.AsTime().Equal(onSale) || w.AdmitPerSecond != waitroom.MaxAdmitPerSecond ||
		w.AdmissionTtlSeconds != waitroom.DefaultAdmissionTTL || w.CreatedAt == nil {
		t.Fatalf("room answered %v", w)
	}
	if w := put.Msg.WaitingRoom; w.Admission != "rate" || w.AutoMarginPercent != 0 {
		t.Fatalf("room answered admission %q, margin %d; want the default rate", w.Admission, w.AutoMarginPercent)
	}
	// Automatic admission, as REST sets it; then back to the rate.
	auto := &pb.PutWaitingRoomRequest{ShowId: "gala", OpensAt: room.OpensAt, AdmitPerSecond: 50, Admission: "auto"}
	if got, err := c.PutWaitingRoom(ctx, call(auto, admin, "")); err != nil || got.Msg.WaitingRoom.Admission != "auto" ||
		got.Msg.WaitingRoom.AutoMarginPercent != waitroom.DefaultAutoMargin {
		t.Fatalf("put an automatic room: %v %v", got, err)
	}
	_, err = c.PutWaitingRoom(ctx, call(&pb.PutWaitingRoomRequest{ShowId: "gala", OpensAt: room.OpensAt, AdmitPerSecond: 50,
		Admission: "auto", AutoMarginPercent: proto.Int32(-1)}, admin, ""))
	if p := wantProblem(t, err, connect.CodeInvalidArgument, "validation_failed"); len(p.Errors) != 1 || p.Errors[0].Field != "auto_margin_percent" {
		t.Fatalf("a negative margin: %v", p)
	}
	if again, err := c.PutWaitingRoom(ctx, call(room, admin, "")); err != nil || again.Msg.Created || again.Msg.WaitingRoom.Admission != "rate" {
		t.Fatalf("put again: %v %v; want replaced, admitting at its rate", again, err)
	}
	_, err = c.PutWaitingRoom(ctx, call(&pb.PutWaitingRoomRequest{ShowId: "gala", OpensAt: room.OpensAt}, admin, ""))
	if p := wantProblem(t, err, connect.CodeInvalidArgument, "validation_failed"); len(p.Errors) != 1 || p.Errors[0].Field != "admit_per_second" {
		t.Fatalf("no rate: %v", p)
	}
	_, err = c.PutWaitingRoom(ctx, call(&pb.PutWaitingRoomRequest{ShowId: "nothing", OpensAt: room.OpensAt, AdmitPerSecond: 5}, admin, ""))
	wantProblem(t, err, connect.CodeNotFound, "not_found")

	// The refusal says what to do in gRPC's terms: an RPC to join, metadata to send.
	_, err = c.CreateHold(ctx, call(hold("ann@example.com"), client, "h1"))
	if p := wantProblem(t, err, connect.CodePermissionDenied, boxoffice.ENOTADMITTED); p.Status != 403 ||
		!strings.Contains(p.Detail, "JoinWaitingRoom") || !strings.Contains(p.Detail, "queue-ticket metadata") ||
		strings.Contains(p.Detail, "/v1/") || strings.Contains(p.Detail, "header") {
		t.Fatalf("hold without a ticket: %v; want 403 naming JoinWaitingRoom and queue-ticket metadata", p)
	}
	_, err = c.Purchase(ctx, call(&pb.PurchaseRequest{ShowId: "gala", TierId: "ga", Quantity: 1, Buyer: &pb.Buyer{Email: "ann@example.com"},
		Payment: &pb.Payment{Token: payments.TokenOK}}, client, "p1"))
	wantProblem(t, err, connect.CodePermissionDenied, boxoffice.ENOTADMITTED)

	join := &pb.JoinWaitingRoomRequest{ShowId: "gala", Buyer: &pb.Buyer{Email: "ann@example.com"}}
	_, err = c.JoinWaitingRoom(ctx, call(join, client, ""))
	wantProblem(t, err, connect.CodeInvalidArgument, boxoffice.EIDEMMISSING)
	joined, err := c.JoinWaitingRoom(ctx, call(join, client, "j1"))
	if err != nil || !joined.Msg.Created {
		t.Fatalf("join: %v %v", joined, err)
	}
	tk := joined.Msg.QueueTicket
	// Before the on-sale the draw is secret: no position, the wait is the time to the on-sale.
	if !strings.HasPrefix(tk.Id, "qtk_") || tk.ShowId != "gala" || tk.Status != "waiting" || tk.Position != nil ||
		tk.EstimatedWaitSeconds == nil || *tk.EstimatedWaitSeconds != 60 || tk.Token == "" || tk.AdmittedAt != nil || tk.TokenExpiresAt == nil ||
		tk.PollAfterSeconds == nil || *tk.PollAfterSeconds != 5 {
		t.Fatalf("joined ticket %v", tk)
	}
	// One place per buyer: joining again (another spelling of the address) answers the same place.
	rejoin, err := c.JoinWaitingRoom(ctx, call(&pb.JoinWaitingRoomRequest{ShowId: "gala", Buyer: &pb.Buyer{Email: "ANN@example.com"}}, client, "j2"))
	if err != nil || rejoin.Msg.Created || rejoin.Msg.QueueTicket.Id != tk.Id {
		t.Fatalf("join again: %v %v; want the same place", rejoin, err)
	}
	_, err = c.JoinWaitingRoom(ctx, call(&pb.JoinWaitingRoomRequest{ShowId: "gala", Buyer: &pb.Buyer{Email: "not an address"}}, client, "j3"))
	if p := wantProblem(t, err, connect.CodeInvalidArgument, "validation_failed"); len(p.Errors) != 1 || p.Errors[0].Field != "buyer.email" {
		t.Fatalf("bad email: %v", p)
	}
	_, err = c.JoinWaitingRoom(ctx, call(&pb.JoinWaitingRoomRequest{ShowId: "open", Buyer: join.Buyer}, client, "j4"))
	wantProblem(t, err, connect.CodeNotFound, "not_found")
	if got, err := c.GetWaitingRoom(ctx, call(&pb.GetWaitingRoomRequest{ShowId: "gala"}, client, "")); err != nil ||
		got.Msg.WaitingRoom.Waiting != 1 || got.Msg.WaitingRoom.Admitted != 0 {
		t.Fatalf("room with one waiting: %v %v", got, err)
	}
	// A paused room says so, to the admin and on the waiting ticket; a put without it resumes.
	paused := &pb.PutWaitingRoomRequest{ShowId: "gala", OpensAt: room.OpensAt, AdmitPerSecond: room.AdmitPerSecond, Paused: true}
	if got, err := c.PutWaitingRoom(ctx, call(paused, admin, "")); err != nil || !got.Msg.WaitingRoom.Paused {
		t.Fatalf("pause the room: %v %v", got, err)
	}
	if got, err := c.GetQueueTicket(ctx, call(&pb.GetQueueTicketRequest{Token: tk.Token}, client, "")); err != nil ||
		!got.Msg.QueueTicket.Paused || got.Msg.QueueTicket.Status != "waiting" {
		t.Fatalf("a waiting ticket in a paused room: %v %v; want paused", got, err)
	}
	if got, err := c.PutWaitingRoom(ctx, call(room, admin, "")); err != nil || got.Msg.WaitingRoom.Paused {
		t.Fatalf("resume the room: %v %v", got, err)
	}
	if got, err := c.GetQueueTicket(ctx, call(&pb.GetQueueTicketRequest{Token: tk.Token}, client, "")); err != nil || got.Msg.QueueTicket.Paused {
		t.Fatalf("the ticket after the resume: %v %v; want not paused", got, err)
	}

	// A waiting ticket opens nothing.
	_, err = c.CreateHold(ctx, withTicket(call(hold("ann@example.com"), client, "h1"), tk.Token))
	if p := wantProblem(t, err, connect.CodePermissionDenied, boxoffice.ENOTADMITTED); !strings.Contains(p.Detail, "GetQueueTicket") ||
		strings.Contains(p.Detail, "/v1/") {
		t.Fatalf("hold with a waiting ticket: %v; want a detail naming GetQueueTicket", p)
	}

	clock.Advance(2 * time.Minute)
	if n := rooms.AdmitOnce(ctx); n != 1 {
		t.Fatalf("admitted %d, want 1", n)
	}
	read, err := c.GetQueueTicket(ctx, call(&pb.GetQueueTicketRequest{Token: tk.Token}, client, ""))
	if err != nil {
		t.Fatal(err)
	}
	admitted := read.Msg.QueueTicket
	if admitted.Status != "admitted" || admitted.Id != tk.Id || admitted.AdmittedAt == nil || admitted.AdmissionExpiresAt == nil ||
		admitted.Position != nil || admitted.Token == tk.Token {
		t.Fatalf("admitted ticket %v", admitted)
	}
	// The admitted token opens holds for its buyer, over gRPC as over REST; the same
	// Idempotency-Key refused before now buys, since a refusal for want of admission is not stored.
	h, err := c.CreateHold(ctx, withTicket(call(hold("ann@example.com"), client, "h1"), admitted.Token))
	if err != nil || h.Msg.Hold.Status != "active" {
		t.Fatalf("admitted hold: %v %v", h, err)
	}
	_, err = c.CreateHold(ctx, withTicket(call(hold("bo@example.com"), client, "h2"), admitted.Token))
	wantProblem(t, err, connect.CodePermissionDenied, boxoffice.ENOTADMITTED)
	buyReq := call(&pb.PurchaseRequest{ShowId: "gala", TierId: "ga", Quantity: 1, Buyer: &pb.Buyer{Email: "ann@example.com"},
		Payment: &pb.Payment{Token: payments.TokenOK}}, client, "p1")
	buyReq.Header().Set(waitroom.HeaderTicket, admitted.Token)
	if buy, err := c.Purchase(ctx, buyReq); err != nil || buy.Msg.Order.Status != "confirmed" {
		t.Fatalf("admitted purchase: %v %v", buy, err)
	}

	_, err = c.GetQueueTicket(ctx, call(&pb.GetQueueTicketRequest{Token: "not-a-token"}, client, ""))
	wantProblem(t, err, connect.CodeNotFound, "not_found")
	_, err = c.GetQueueTicket(ctx, call(&pb.GetQueueTicketRequest{Token: admitted.Token}, "nope", ""))
	wantProblem(t, err, connect.CodeUnauthenticated, "unauthorized")

	// Past its admission (300 s) the token opens nothing; past its own expiry (10 min) it reads
	// nothing either.
	clock.Advance(11 * time.Minute)
	_, err = c.CreateHold(ctx, withTicket(call(hold("ann@example.com"), client, "h3"), admitted.Token))
	wantProblem(t, err, connect.CodePermissionDenied, boxoffice.ENOTADMITTED)
	_, err = c.GetQueueTicket(ctx, call(&pb.GetQueueTicketRequest{Token: admitted.Token}, client, ""))
	if p := wantProblem(t, err, connect.CodeFailedPrecondition, boxoffice.ETICKETEXPIRED); p.Status != 410 {
		t.Fatalf("expired token: %v; want 410", p)
	}

	_, err = c.DeleteWaitingRoom(ctx, call(&pb.DeleteWaitingRoomRequest{ShowId: "gala"}, client, ""))
	wantProblem(t, err, connect.CodePermissionDenied, "forbidden")
	if _, err := c.DeleteWaitingRoom(ctx, call(&pb.DeleteWaitingRoomRequest{ShowId: "gala"}, admin, "")); err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteWaitingRoom(ctx, call(&pb.DeleteWaitingRoomRequest{ShowId: "gala"}, admin, ""))
	wantProblem(t, err, connect.CodeNotFound, "not_found")
	// Without its room the show sells to anyone again.
	if _, err := c.CreateHold(ctx, call(hold("bo@example.com"), client, "h4")); err != nil {
		t.Fatalf("hold after the room is gone: %v", err)
	}
}

// TestWatchQueueTicket streams a ticket as REST's server-sent events do: waiting while it waits,
// then admitted, and the stream ends after that message.
func TestWatchQueueTicket(t *testing.T) {
	clock := inventorytest.NewClock()
	srv, rooms := newServerAt(t, clock.Now)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := boxofficev1connect.NewBoxOfficeServiceClient(h2c(), srv.URL, connect.WithGRPC())
	if _, err := c.PutShow(ctx, call(showRequest("gala", 10), admin, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutWaitingRoom(ctx, call(&pb.PutWaitingRoomRequest{ShowId: "gala", OpensAt: timestamppb.New(clock.Now().Add(-time.Minute)),
		AdmitPerSecond: waitroom.MaxAdmitPerSecond}, admin, "")); err != nil {
		t.Fatal(err)
	}
	joined, err := c.JoinWaitingRoom(ctx, call(&pb.JoinWaitingRoomRequest{ShowId: "gala", Buyer: &pb.Buyer{Email: "ann@example.com"}}, admin, "j1"))
	if err != nil {
		t.Fatal(err)
	}

	// A refusal comes before any message, with the problem a unary call would carry.
	for _, c2 := range []struct {
		key, token, code string
		want             connect.Code
	}{
		{"nope", joined.Msg.QueueTicket.Token, "unauthorized", connect.CodeUnauthenticated},
		{admin, "not-a-token", "not_found", connect.CodeNotFound},
	} {
		bad, err := c.WatchQueueTicket(ctx, call(&pb.WatchQueueTicketRequest{Token: c2.token}, c2.key, ""))
		if err != nil {
			t.Fatal(err)
		}
		if bad.Receive() {
			t.Fatalf("a refused stream sent %v", bad.Msg())
		}
		wantProblem(t, bad.Err(), c2.want, c2.code)
		_ = bad.Close()
	}

	stream, err := c.WatchQueueTicket(ctx, call(&pb.WatchQueueTicketRequest{Token: joined.Msg.QueueTicket.Token}, admin, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() {
		t.Fatalf("no first message: %v", stream.Err())
	}
	first := stream.Msg().QueueTicket
	if first.Status != "waiting" || first.Position == nil || *first.Position != 1 || first.Token == "" {
		t.Fatalf("first message %v; want waiting at position 1", first)
	}
	clock.Advance(time.Second)
	if n := rooms.AdmitOnce(ctx); n != 1 {
		t.Fatalf("admitted %d, want 1", n)
	}
	// Each later message is the ticket read again; the stream ends after the admitted one. The
	// ticket waits at most until the admission, so the loop is bounded by the stream's end.
	var last *pb.QueueTicket
	messages := 1
	for stream.Receive() {
		last = stream.Msg().QueueTicket
		messages++
		if messages > 10 {
			t.Fatalf("the stream goes on after %v", last)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	if last == nil || last.Status != "admitted" || last.AdmissionExpiresAt == nil {
		t.Fatalf("last message %v; want admitted", last)
	}
	// The streamed token opens holds, as GetQueueTicket's does.
	r := call(&pb.CreateHoldRequest{ShowId: "gala", TierId: "ga", Quantity: 1, Buyer: &pb.Buyer{Email: "ann@example.com"}}, admin, "h1")
	r.Header().Set(waitroom.HeaderTicket, last.Token)
	if _, err := c.CreateHold(ctx, r); err != nil {
		t.Fatalf("hold with the streamed token: %v", err)
	}
	// The streams are counted in the RPC metrics with the code each ended with.
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	const watch = "/" + boxofficev1connect.BoxOfficeServiceName + "/WatchQueueTicket"
	for _, want := range []string{
		`boxoffice_rpc_requests_total{code="ok",procedure="` + watch + `"} 1`,
		`boxoffice_rpc_requests_total{code="unauthenticated",procedure="` + watch + `"} 1`,
		`boxoffice_rpc_requests_total{code="not_found",procedure="` + watch + `"} 1`,
	} {
		if !strings.Contains(string(b), "\n"+want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
