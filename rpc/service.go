package rpc

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"boxoffice"
	pb "boxoffice/gen/boxoffice/v1"
	"boxoffice/gen/boxoffice/v1/boxofficev1connect"
	bohttp "boxoffice/http"
	"boxoffice/internal/keylimit"
	"boxoffice/sale"
	"boxoffice/waitroom"
)

// Metadata of the API.
const (
	// HeaderIdempotencyKey is the request metadata carrying the idempotency key.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderReplayed is the response header set to "true" on a stored answer given again.
	HeaderReplayed = "Idempotent-Replayed"
)

// Page sizes, as for REST.
const (
	defaultLimit   = 20
	maxLimit       = 100
	maxServerIDLen = 64
)

// server implements boxofficev1connect.BoxOfficeServiceHandler over the service layer.
type server struct {
	svc   bohttp.Service
	limit *keylimit.Limiter
	rooms bohttp.WaitRoom // nil: the server has no waiting rooms
	log   *slog.Logger
}

var _ boxofficev1connect.BoxOfficeServiceHandler = (*server)(nil)

var (
	render    bohttp.Renderer
	unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}
)

// fail turns a returned error into the RPC's error; internal ones go through logInternal.
func fail(err error) error {
	ce := toError(err)
	if ce.Code() == connect.CodeInternal {
		return &internalError{cause: err, answer: ce}
	}
	return ce
}

// decode turns the service's answer into msg: the rendered JSON body of a success, or the error of
// a failure (returned, or rendered and stored; a replayed stored failure is marked as REST marks it).
func decode(resp *boxoffice.Response, replayed bool, err error, msg proto.Message) error {
	if err != nil {
		return fail(err)
	}
	if resp.Status >= 400 {
		e := problemError(resp)
		if replayed {
			e.Meta().Set(HeaderReplayed, "true")
		}
		return e
	}
	if len(resp.Body) == 0 {
		return nil
	}
	if err := unmarshal.Unmarshal(resp.Body, msg); err != nil {
		return fail(err)
	}
	return nil
}

// read renders v as REST does and decodes it into msg, so reads also answer the same.
func read(v any, err error, msg proto.Message) error {
	if err != nil {
		return fail(err)
	}
	return decode(render.Resource(http.StatusOK, v, ""), false, nil, msg)
}

// reply wraps msg, marking a replayed answer.
func reply[T any](msg *T, replayed bool) *connect.Response[T] {
	r := connect.NewResponse(msg)
	if replayed {
		r.Header().Set(HeaderReplayed, "true")
	}
	return r
}

// authenticate returns the caller, as REST does from the same Authorization header.
func (s *server) authenticate(ctx context.Context, h http.Header, admin bool) (*boxoffice.Principal, error) {
	values := h.Values("Authorization")
	if len(values) == 0 {
		return nil, fail(boxoffice.Errorf(boxoffice.EUNAUTHORIZED, "an API key is required: authorization: Bearer <key>"))
	}
	scheme, key, ok := strings.Cut(strings.TrimSpace(values[0]), " ")
	key = strings.TrimSpace(key)
	if len(values) > 1 || !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return nil, fail(boxoffice.Errorf(boxoffice.EUNAUTHORIZED, "the authorization metadata must be Bearer <key>"))
	}
	p, err := s.svc.Authenticate(ctx, key)
	if err != nil {
		if c := boxoffice.ErrorCode(err); c == boxoffice.ENOTFOUND || c == boxoffice.EUNAUTHORIZED {
			return nil, fail(boxoffice.Errorf(boxoffice.EUNAUTHORIZED, "unknown API key"))
		}
		return nil, fail(err)
	}
	if p == nil {
		return nil, fail(boxoffice.Errorf(boxoffice.EUNAUTHORIZED, "unknown API key"))
	}
	if err := s.limit.Allow(p.KeyID); err != nil {
		return nil, fail(err)
	}
	if p.Role != boxoffice.RoleAdmin && (admin || p.Role != boxoffice.RoleClient) {
		return nil, fail(boxoffice.Errorf(boxoffice.EFORBIDDEN, "this API key may not do that"))
	}
	return p, nil
}

// idem is the idempotency context of an RPC that is a POST in REST: the key from metadata, and
// the scope and fingerprint sale.NewIdem makes of the REST operation the RPC is, its path and the
// decoded input, so that a key has one effect whichever transport carries it.
func idem[T any](p *boxoffice.Principal, req *connect.Request[T], operation, path string, in any) (sale.Idem, error) {
	key, err := idempotencyKey(req.Header().Values(HeaderIdempotencyKey))
	if err != nil {
		return sale.Idem{}, fail(err)
	}
	id, err := sale.NewIdem(p.KeyID, operation, path, key, in)
	if err != nil {
		return sale.Idem{}, fail(err)
	}
	return id, nil
}

// idempotencyKey parses the idempotency-key metadata as REST parses its header (one value, bare
// or a quoted string, 1 to 255 visible ASCII characters), with errors that name what a gRPC
// client sets: the REST ones speak of an Idempotency-Key header, which a gRPC client has not.
func idempotencyKey(values []string) (string, error) {
	key, err := bohttp.ParseIdempotencyKey(values)
	if err == nil {
		return key, nil
	}
	code := boxoffice.ErrorCode(err)
	switch {
	case code == boxoffice.EIDEMMISSING:
		return "", boxoffice.Errorf(code, "this call needs idempotency-key metadata: a key of its own, the same on every retry of it")
	case len(values) > 1:
		return "", boxoffice.Errorf(code, "the idempotency-key metadata must be given once")
	case strings.HasPrefix(strings.Trim(values[0], " \t"), `"`):
		return "", boxoffice.Errorf(code, "the idempotency-key metadata is not a valid quoted string")
	}
	return "", boxoffice.Errorf(code, "the idempotency-key metadata must be 1 to 255 visible ASCII characters")
}

// metadataDetails are the details of the idempotency failures that the service words for REST
// ("this Idempotency-Key …"), as a gRPC client knows the key: idempotency-key metadata. They
// replace the service's detail in a live or forwarded answer; neither failure is ever stored.
var metadataDetails = map[string]string{
	boxoffice.EIDEMREUSED:     "this idempotency-key metadata was used with a different request",
	boxoffice.EIDEMINPROGRESS: "a request with this idempotency-key metadata is still in progress",
}

// serverID checks an id the server made: its prefix and length, else not found, as REST does.
func serverID(id, prefix string) error {
	if !strings.HasPrefix(id, prefix) || len(id) <= len(prefix) || len(id) > maxServerIDLen {
		return fail(boxoffice.Errorf(boxoffice.ENOTFOUND, "no such resource"))
	}
	return nil
}

// pageLimit is a page size: 0 is the default, else 1 to 100.
func pageLimit(n int32) (int, error) {
	if n == 0 {
		return defaultLimit, nil
	}
	if n < 1 || n > maxLimit {
		return 0, fail(boxoffice.Validation(boxoffice.FieldError{Field: "limit", Message: "must be an integer from 1 to 100"}))
	}
	return int(n), nil
}

// page is the JSON of a list, for decoding into a list response.
type page[T any] struct {
	Data []T    `json:"data"`
	Next string `json:"next,omitempty"`
}

// CreateApiKey is POST /v1/api-keys.
func (s *server) CreateApiKey(ctx context.Context, req *connect.Request[pb.CreateApiKeyRequest]) (*connect.Response[pb.CreateApiKeyResponse], error) {
	p, err := s.authenticate(ctx, req.Header(), true)
	if err != nil {
		return nil, err
	}
	in := sale.APIKeyInput{Role: boxoffice.Role(req.Msg.GetRole()), Label: req.Msg.GetLabel()}
	id, err := idem(p, req, "POST /v1/api-keys", "/v1/api-keys", in)
	if err != nil {
		return nil, err
	}
	resp, replayed, err := s.svc.CreateAPIKey(ctx, id, in)
	var out pb.CreateApiKeyResponse
	if err := decode(resp, replayed, err, &out); err != nil {
		return nil, err
	}
	return reply(&out, replayed), nil
}

// ListApiKeys is GET /v1/api-keys.
func (s *server) ListApiKeys(ctx context.Context, req *connect.Request[pb.ListApiKeysRequest]) (*connect.Response[pb.ListApiKeysResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), true); err != nil {
		return nil, err
	}
	limit, err := pageLimit(req.Msg.GetLimit())
	if err != nil {
		return nil, err
	}
	keys, next, err := s.svc.ListAPIKeys(ctx, req.Msg.GetAfter(), limit)
	var out pb.ListApiKeysResponse
	if err := read(page[*boxoffice.APIKey]{keys, next}, err, &out); err != nil {
		return nil, err
	}
	return connect.NewResponse(&out), nil
}

// RevokeApiKey is DELETE /v1/api-keys/{key_id}.
func (s *server) RevokeApiKey(ctx context.Context, req *connect.Request[pb.RevokeApiKeyRequest]) (*connect.Response[pb.RevokeApiKeyResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), true); err != nil {
		return nil, err
	}
	if err := serverID(req.Msg.GetKeyId(), boxoffice.PrefixAPIKey); err != nil {
		return nil, err
	}
	if err := s.svc.RevokeAPIKey(ctx, req.Msg.GetKeyId()); err != nil {
		return nil, fail(err)
	}
	return connect.NewResponse(&pb.RevokeApiKeyResponse{}), nil
}

// PutShow is PUT /v1/shows/{show_id}.
func (s *server) PutShow(ctx context.Context, req *connect.Request[pb.PutShowRequest]) (*connect.Response[pb.PutShowResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), true); err != nil {
		return nil, err
	}
	m := req.Msg
	if !boxoffice.ValidName(m.GetShowId()) {
		return nil, fail(boxoffice.Validation(boxoffice.FieldError{Field: "show_id", Message: "must match ^[a-z0-9][a-z0-9_-]{0,63}$"}))
	}
	in := sale.ShowInput{Name: m.GetName(), HoldTTLSeconds: intPtr(m.HoldTtlSeconds), MaxPerBuyer: intPtr(m.MaxPerBuyer),
		CancelCutoffSeconds: intPtr(m.CancelCutoffSeconds)}
	if m.StartsAt != nil {
		if err := m.StartsAt.CheckValid(); err != nil {
			return nil, fail(boxoffice.Validation(boxoffice.FieldError{Field: "starts_at", Message: "is not a valid time"}))
		}
		t := m.StartsAt.AsTime()
		in.StartsAt = &t
	}
	for _, t := range m.GetTiers() {
		ti := sale.TierInput{ID: t.GetId(), Name: t.GetName(), Capacity: intPtr(t.Capacity)}
		if t.Price != nil {
			ti.Price = &boxoffice.Money{Amount: t.Price.GetAmount(), Currency: t.Price.GetCurrency()}
		}
		ti.SeatMap = seatMapInput(t.SeatMap)
		in.Tiers = append(in.Tiers, ti)
	}
	show, created, err := s.svc.PutShow(ctx, m.GetShowId(), in)
	out := &pb.PutShowResponse{Show: &pb.Show{}, Created: created}
	if err := read(show, err, out.Show); err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// seatMapInput is a tier's seat map as REST decodes it from seat_map; nil when the tier has none.
// The service validates it, so a message and a REST body get the same field errors.
func seatMapInput(m *pb.SeatMapInput) *sale.SeatMapInput {
	if m == nil {
		return nil
	}
	// A map without sections stays a map (not nil, an unseated tier): the service refuses it, as
	// REST refuses "seat_map":{}.
	out := &sale.SeatMapInput{}
	for _, sec := range m.GetSections() {
		si := sale.SectionInput{ID: sec.GetId()}
		for _, r := range sec.GetRows() {
			si.Rows = append(si.Rows, sale.RowInput{ID: r.GetId(), Seats: int(r.GetSeats()), Labels: r.GetLabels(),
				Accessible: r.GetAccessible(), RestrictedView: r.GetRestrictedView()})
		}
		out.Sections = append(out.Sections, si)
	}
	return out
}

// intPtr converts an optional int32.
func intPtr(p *int32) *int {
	if p == nil {
		return nil
	}
	n := int(*p)
	return &n
}

// GetShow is GET /v1/shows/{show_id}.
func (s *server) GetShow(ctx context.Context, req *connect.Request[pb.GetShowRequest]) (*connect.Response[pb.GetShowResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), false); err != nil {
		return nil, err
	}
	if !boxoffice.ValidName(req.Msg.GetShowId()) {
		return nil, fail(boxoffice.Errorf(boxoffice.ENOTFOUND, "no such resource"))
	}
	show, err := s.svc.GetShow(ctx, req.Msg.GetShowId())
	out := &pb.GetShowResponse{Show: &pb.Show{}}
	if err := read(show, err, out.Show); err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// GetShowSeats is GET /v1/shows/{show_id}/seats: the seat map with each seat's state. An
// if_none_match naming the current etag is answered not_modified without the seats (REST's 304),
// so a client polling the map during an on-sale moves bytes only when a seat changed.
func (s *server) GetShowSeats(ctx context.Context, req *connect.Request[pb.GetShowSeatsRequest]) (*connect.Response[pb.GetShowSeatsResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), false); err != nil {
		return nil, err
	}
	if !boxoffice.ValidName(req.Msg.GetShowId()) {
		return nil, fail(boxoffice.Errorf(boxoffice.ENOTFOUND, "no such resource"))
	}
	body, etag, err := s.svc.ShowSeats(ctx, req.Msg.GetShowId())
	if err != nil {
		return nil, fail(err)
	}
	if etagMatches(req.Msg.GetIfNoneMatch(), etag) {
		return connect.NewResponse(&pb.GetShowSeatsResponse{NotModified: true, Etag: etag}), nil
	}
	out := &pb.GetShowSeatsResponse{}
	if err := decode(&boxoffice.Response{Status: http.StatusOK, Body: body}, false, nil, out); err != nil {
		return nil, err
	}
	out.Etag = etag
	return connect.NewResponse(out), nil
}

// etagMatches says whether an If-None-Match value names etag, as REST's GET of the seats reads
// the header: a comma-separated list of etags, weak ones (W/"…") matching too, or *.
func etagMatches(ifNoneMatch, etag string) bool {
	for tag := range strings.SplitSeq(ifNoneMatch, ",") {
		if tag = strings.TrimSpace(tag); tag != "" && (tag == etag || tag == "W/"+etag || tag == "*") {
			return true
		}
	}
	return false
}

// ListShows is GET /v1/shows.
func (s *server) ListShows(ctx context.Context, req *connect.Request[pb.ListShowsRequest]) (*connect.Response[pb.ListShowsResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), false); err != nil {
		return nil, err
	}
	limit, err := pageLimit(req.Msg.GetLimit())
	if err != nil {
		return nil, err
	}
	shows, next, err := s.svc.ListShows(ctx, req.Msg.GetAfter(), limit)
	var out pb.ListShowsResponse
	if err := read(page[*boxoffice.Show]{shows, next}, err, &out); err != nil {
		return nil, err
	}
	return connect.NewResponse(&out), nil
}

// CreateHold is POST /v1/shows/{show_id}/holds.
func (s *server) CreateHold(ctx context.Context, req *connect.Request[pb.CreateHoldRequest]) (*connect.Response[pb.CreateHoldResponse], error) {
	p, err := s.authenticate(ctx, req.Header(), false)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	in := sale.HoldInput{ShowID: m.GetShowId(), TierID: m.GetTierId(),
		Quantity: int(m.GetQuantity()), Seats: m.GetSeats(), Buyer: sale.BuyerInput{Email: m.GetBuyer().GetEmail()}}
	id, err := idem(p, req, "POST /v1/shows/{show_id}/holds", "/v1/shows/"+m.GetShowId()+"/holds", in)
	if err != nil {
		return nil, err
	}
	if !boxoffice.ValidName(m.GetShowId()) {
		return nil, fail(boxoffice.Errorf(boxoffice.ENOTFOUND, "no such resource"))
	}
	// A show's waiting room admits by the queue ticket's token, sent as REST sends it.
	ctx = waitroom.WithToken(ctx, req.Header().Get(waitroom.HeaderTicket))
	resp, replayed, err := s.svc.CreateHold(ctx, p, id, in)
	out := &pb.CreateHoldResponse{Hold: &pb.Hold{}}
	if err := decode(resp, replayed, err, out.Hold); err != nil {
		return nil, err
	}
	return reply(out, replayed), nil
}

// GetHold is GET /v1/holds/{hold_id}.
func (s *server) GetHold(ctx context.Context, req *connect.Request[pb.GetHoldRequest]) (*connect.Response[pb.GetHoldResponse], error) {
	p, err := s.authenticate(ctx, req.Header(), false)
	if err != nil {
		return nil, err
	}
	if err := serverID(req.Msg.GetHoldId(), boxoffice.PrefixHold); err != nil {
		return nil, err
	}
	hold, err := s.svc.GetHold(ctx, p, req.Msg.GetHoldId())
	out := &pb.GetHoldResponse{Hold: &pb.Hold{}}
	if err := read(hold, err, out.Hold); err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// ReleaseHold is DELETE /v1/holds/{hold_id}.
func (s *server) ReleaseHold(ctx context.Context, req *connect.Request[pb.ReleaseHoldRequest]) (*connect.Response[pb.ReleaseHoldResponse], error) {
	p, err := s.authenticate(ctx, req.Header(), false)
	if err != nil {
		return nil, err
	}
	if err := serverID(req.Msg.GetHoldId(), boxoffice.PrefixHold); err != nil {
		return nil, err
	}
	if err := s.svc.ReleaseHold(ctx, p, req.Msg.GetHoldId()); err != nil {
		return nil, fail(err)
	}
	return connect.NewResponse(&pb.ReleaseHoldResponse{}), nil
}

// ConfirmHold is POST /v1/holds/{hold_id}/confirm.
func (s *server) ConfirmHold(ctx context.Context, req *connect.Request[pb.ConfirmHoldRequest]) (*connect.Response[pb.ConfirmHoldResponse], error) {
	p, err := s.authenticate(ctx, req.Header(), false)
	if err != nil {
		return nil, err
	}
	in := sale.ConfirmInput{Payment: sale.PaymentInput{Token: req.Msg.GetPayment().GetToken()}}
	id, err := idem(p, req, "POST /v1/holds/{hold_id}/confirm", "/v1/holds/"+req.Msg.GetHoldId()+"/confirm", in)
	if err != nil {
		return nil, err
	}
	if err := serverID(req.Msg.GetHoldId(), boxoffice.PrefixHold); err != nil {
		return nil, err
	}
	resp, replayed, err := s.svc.ConfirmHold(ctx, p, id, req.Msg.GetHoldId(), in)
	out := &pb.ConfirmHoldResponse{Order: &pb.Order{}}
	if err := decode(resp, replayed, err, out.Order); err != nil {
		return nil, err
	}
	return reply(out, replayed), nil
}

// Purchase is POST /v1/purchases.
func (s *server) Purchase(ctx context.Context, req *connect.Request[pb.PurchaseRequest]) (*connect.Response[pb.PurchaseResponse], error) {
	p, err := s.authenticate(ctx, req.Header(), false)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	in := sale.PurchaseInput{ShowID: m.GetShowId(), TierID: m.GetTierId(),
		Quantity: int(m.GetQuantity()), Seats: m.GetSeats(), Buyer: sale.BuyerInput{Email: m.GetBuyer().GetEmail()},
		Payment: sale.PaymentInput{Token: m.GetPayment().GetToken()}}
	id, err := idem(p, req, "POST /v1/purchases", "/v1/purchases", in)
	if err != nil {
		return nil, err
	}
	// A show's waiting room admits by the queue ticket's token, sent as REST sends it.
	ctx = waitroom.WithToken(ctx, req.Header().Get(waitroom.HeaderTicket))
	resp, replayed, err := s.svc.Purchase(ctx, p, id, in)
	out := &pb.PurchaseResponse{Order: &pb.Order{}}
	if err := decode(resp, replayed, err, out.Order); err != nil {
		return nil, err
	}
	return reply(out, replayed), nil
}

// GetOrder is GET /v1/orders/{order_id}.
func (s *server) GetOrder(ctx context.Context, req *connect.Request[pb.GetOrderRequest]) (*connect.Response[pb.GetOrderResponse], error) {
	p, err := s.authenticate(ctx, req.Header(), false)
	if err != nil {
		return nil, err
	}
	if err := serverID(req.Msg.GetOrderId(), boxoffice.PrefixOrder); err != nil {
		return nil, err
	}
	order, err := s.svc.GetOrder(ctx, p, req.Msg.GetOrderId())
	out := &pb.GetOrderResponse{Order: &pb.Order{}}
	if err := read(order, err, out.Order); err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// ListOrders is GET /v1/orders.
func (s *server) ListOrders(ctx context.Context, req *connect.Request[pb.ListOrdersRequest]) (*connect.Response[pb.ListOrdersResponse], error) {
	p, err := s.authenticate(ctx, req.Header(), false)
	if err != nil {
		return nil, err
	}
	limit, err := pageLimit(req.Msg.GetLimit())
	if err != nil {
		return nil, err
	}
	show := req.Msg.GetShowId()
	if show != "" && !boxoffice.ValidName(show) {
		return nil, fail(boxoffice.Validation(boxoffice.FieldError{Field: "show_id", Message: "must match ^[a-z0-9][a-z0-9_-]{0,63}$"}))
	}
	orders, next, err := s.svc.ListOrders(ctx, p, show, req.Msg.GetAfter(), limit)
	var out pb.ListOrdersResponse
	if err := read(page[*boxoffice.Order]{orders, next}, err, &out); err != nil {
		return nil, err
	}
	return connect.NewResponse(&out), nil
}

// CancelOrder is POST /v1/orders/{order_id}/cancel.
func (s *server) CancelOrder(ctx context.Context, req *connect.Request[pb.CancelOrderRequest]) (*connect.Response[pb.CancelOrderResponse], error) {
	p, err := s.authenticate(ctx, req.Header(), false)
	if err != nil {
		return nil, err
	}
	// REST's cancel takes no input: its decoded body is an empty object.
	id, err := idem(p, req, "POST /v1/orders/{order_id}/cancel", "/v1/orders/"+req.Msg.GetOrderId()+"/cancel", struct{}{})
	if err != nil {
		return nil, err
	}
	if err := serverID(req.Msg.GetOrderId(), boxoffice.PrefixOrder); err != nil {
		return nil, err
	}
	resp, replayed, err := s.svc.CancelOrder(ctx, p, id, req.Msg.GetOrderId())
	out := &pb.CancelOrderResponse{Order: &pb.Order{}}
	if err := decode(resp, replayed, err, out.Order); err != nil {
		return nil, err
	}
	return reply(out, replayed), nil
}

// ListEvents is GET /v1/feed: the admin's, as it carries every channel's holds and orders.
func (s *server) ListEvents(ctx context.Context, req *connect.Request[pb.ListEventsRequest]) (*connect.Response[pb.ListEventsResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), true); err != nil {
		return nil, err
	}
	limit, err := pageLimit(req.Msg.GetLimit())
	if err != nil {
		return nil, err
	}
	events, next, err := s.svc.ListEvents(ctx, req.Msg.GetAfter(), limit)
	var out pb.ListEventsResponse
	if err := read(page[*boxoffice.Event]{events, next}, err, &out); err != nil {
		return nil, err
	}
	return connect.NewResponse(&out), nil
}

// PutWebhookEndpoint is PUT /v1/webhook-endpoints/{endpoint_id}.
func (s *server) PutWebhookEndpoint(ctx context.Context, req *connect.Request[pb.PutWebhookEndpointRequest]) (*connect.Response[pb.PutWebhookEndpointResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), true); err != nil {
		return nil, err
	}
	m := req.Msg
	// A bad id in a PUT is the caller naming a new resource wrongly, so REST answers it as a
	// validation failure, not as not found.
	if !boxoffice.ValidName(m.GetEndpointId()) {
		return nil, fail(boxoffice.Validation(boxoffice.FieldError{Field: "endpoint_id", Message: "must match ^[a-z0-9][a-z0-9_-]{0,63}$"}))
	}
	w, created, err := s.svc.PutWebhookEndpoint(ctx, m.GetEndpointId(), sale.WebhookInput{URL: m.GetUrl(), EventTypes: m.GetEventTypes()})
	out := &pb.PutWebhookEndpointResponse{WebhookEndpoint: &pb.WebhookEndpoint{}, Created: created}
	if err := read(w, err, out.WebhookEndpoint); err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// GetWebhookEndpoint is GET /v1/webhook-endpoints/{endpoint_id}.
func (s *server) GetWebhookEndpoint(ctx context.Context, req *connect.Request[pb.GetWebhookEndpointRequest]) (*connect.Response[pb.GetWebhookEndpointResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), true); err != nil {
		return nil, err
	}
	if !boxoffice.ValidName(req.Msg.GetEndpointId()) {
		return nil, fail(boxoffice.Errorf(boxoffice.ENOTFOUND, "no such resource"))
	}
	w, err := s.svc.GetWebhookEndpoint(ctx, req.Msg.GetEndpointId())
	out := &pb.GetWebhookEndpointResponse{WebhookEndpoint: &pb.WebhookEndpoint{}}
	if err := read(w, err, out.WebhookEndpoint); err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// ListWebhookEndpoints is GET /v1/webhook-endpoints: every endpoint on one page.
func (s *server) ListWebhookEndpoints(ctx context.Context, req *connect.Request[pb.ListWebhookEndpointsRequest]) (*connect.Response[pb.ListWebhookEndpointsResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), true); err != nil {
		return nil, err
	}
	list, err := s.svc.ListWebhookEndpoints(ctx)
	var out pb.ListWebhookEndpointsResponse
	if err := read(page[*boxoffice.WebhookEndpoint]{Data: list}, err, &out); err != nil {
		return nil, err
	}
	return connect.NewResponse(&out), nil
}

// DeleteWebhookEndpoint is DELETE /v1/webhook-endpoints/{endpoint_id}: it succeeds also when the
// endpoint is already gone, so a retry is harmless.
func (s *server) DeleteWebhookEndpoint(ctx context.Context, req *connect.Request[pb.DeleteWebhookEndpointRequest]) (*connect.Response[pb.DeleteWebhookEndpointResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), true); err != nil {
		return nil, err
	}
	if !boxoffice.ValidName(req.Msg.GetEndpointId()) {
		return nil, fail(boxoffice.Errorf(boxoffice.ENOTFOUND, "no such resource"))
	}
	if err := s.svc.DeleteWebhookEndpoint(ctx, req.Msg.GetEndpointId()); err != nil {
		return nil, fail(err)
	}
	return connect.NewResponse(&pb.DeleteWebhookEndpointResponse{}), nil
}

// RotateWebhookSecret is POST /v1/webhook-endpoints/{endpoint_id}/rotate-secret.
func (s *server) RotateWebhookSecret(ctx context.Context, req *connect.Request[pb.RotateWebhookSecretRequest]) (*connect.Response[pb.RotateWebhookSecretResponse], error) {
	p, err := s.authenticate(ctx, req.Header(), true)
	if err != nil {
		return nil, err
	}
	in := sale.RotateSecretInput{ExpiresIn: req.Msg.ExpiresIn}
	id, err := idem(p, req, "POST /v1/webhook-endpoints/{endpoint_id}/rotate-secret", "/v1/webhook-endpoints/"+req.Msg.GetEndpointId()+"/rotate-secret", in)
	if err != nil {
		return nil, err
	}
	if !boxoffice.ValidName(req.Msg.GetEndpointId()) {
		return nil, fail(boxoffice.Errorf(boxoffice.ENOTFOUND, "no such resource"))
	}
	resp, replayed, err := s.svc.RotateWebhookSecret(ctx, id, req.Msg.GetEndpointId(), in)
	out := &pb.RotateWebhookSecretResponse{WebhookEndpoint: &pb.WebhookEndpoint{}}
	if err := decode(resp, replayed, err, out.WebhookEndpoint); err != nil {
		return nil, err
	}
	return reply(out, replayed), nil
}
