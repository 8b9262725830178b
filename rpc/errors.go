package rpc

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	"boxoffice"
	boxofficev1 "boxoffice/gen/boxoffice/v1"
	bohttp "boxoffice/http"
)

// grpcCodes is the one table from the SPEC's error codes to gRPC codes. A code missing here is
// answered as INTERNAL, as the REST table does, so that a new code never leaks out under a code
// nobody chose. Every error also carries a boxoffice.v1.Problem detail with the SPEC code, so a
// client tells sold_out from buyer_limit without parsing messages.
var grpcCodes = map[string]connect.Code{
	boxoffice.ESOLDOUT:            connect.CodeFailedPrecondition,
	boxoffice.ESEATUNAVAILABLE:    connect.CodeFailedPrecondition,
	boxoffice.EBUYERLIMIT:         connect.CodeFailedPrecondition,
	boxoffice.EHOLDCONFIRMED:      connect.CodeFailedPrecondition,
	boxoffice.EHOLDRELEASED:       connect.CodeFailedPrecondition,
	boxoffice.EHOLDEXPIRED:        connect.CodeFailedPrecondition,
	boxoffice.ECAPACITYCONFLICT:   connect.CodeFailedPrecondition,
	boxoffice.EPAYMENTDECLINED:    connect.CodeFailedPrecondition,
	boxoffice.ENOTCANCELLABLE:     connect.CodeFailedPrecondition,
	boxoffice.ECANCELWINDOW:       connect.CodeFailedPrecondition,
	boxoffice.EIDEMINPROGRESS:     connect.CodeAborted,
	boxoffice.ECONFLICT:           connect.CodeAborted,
	boxoffice.EIDEMMISSING:        connect.CodeInvalidArgument,
	boxoffice.EIDEMINVALID:        connect.CodeInvalidArgument,
	boxoffice.EIDEMREUSED:         connect.CodeInvalidArgument,
	boxoffice.EVALIDATION:         connect.CodeInvalidArgument,
	boxoffice.EUNSUPPORTEDMEDIA:   connect.CodeInvalidArgument,
	boxoffice.ENOTFOUND:           connect.CodeNotFound,
	boxoffice.EUNAUTHORIZED:       connect.CodeUnauthenticated,
	boxoffice.EFORBIDDEN:          connect.CodePermissionDenied,
	boxoffice.ENOTADMITTED:        connect.CodePermissionDenied,
	boxoffice.ETICKETEXPIRED:      connect.CodeFailedPrecondition,
	boxoffice.EPAYLOADTOOLARGE:    connect.CodeResourceExhausted,
	boxoffice.ERATELIMITED:        connect.CodeResourceExhausted,
	boxoffice.EOVERLOADED:         connect.CodeUnavailable,
	boxoffice.EPAYMENTUNAVAILABLE: connect.CodeUnavailable,
	boxoffice.EREPLAYFAILED:       connect.CodeUnavailable,
	boxoffice.EMETHODNOTALLOWED:   connect.CodeUnimplemented,
	boxoffice.EINTERNAL:           connect.CodeInternal,
}

// CodeOf returns the gRPC code of a SPEC error code, as the one table has it; unknown codes are
// INTERNAL.
func CodeOf(code string) connect.Code {
	if c, ok := grpcCodes[code]; ok {
		return c
	}
	return connect.CodeInternal
}

// problemError turns a rendered problem (a REST problem+json body, stored or fresh) into a gRPC
// error with the same message and a Problem detail. The body is the REST renderer's, so both
// transports say the same thing, and a stored failure replays the same over both.
func problemError(resp *boxoffice.Response) *connect.Error {
	var p boxofficev1.Problem
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(resp.Body, &p); err != nil || p.Code == "" {
		p = boxofficev1.Problem{Code: boxoffice.EINTERNAL, Title: "Internal error", Detail: "internal error", Status: int32(resp.Status)}
	}
	if d, ok := metadataDetails[p.Code]; ok {
		p.Detail = d
	}
	if p.Code == boxoffice.ENOTADMITTED {
		p.Detail = admissionWording(p.Detail)
	}
	e := connect.NewError(CodeOf(p.Code), errors.New(p.Detail))
	if d, err := connect.NewErrorDetail(&p); err == nil {
		e.AddDetail(d)
	}
	return e
}

// restAdmission matches what the waiting room's refusals tell a REST client to do; a gRPC client
// does the same with an RPC and metadata.
var restAdmission = regexp.MustCompile(`POST /v1/shows/[^ )]+/waiting-room/tickets|GET /v1/waiting-room/tickets/\{token\}|the Queue-Ticket header`)

// admissionWording words a not_admitted detail for a gRPC client, as metadataDetails does for the
// idempotency failures: join with JoinWaitingRoom, read with GetQueueTicket, and send the token in
// queue-ticket metadata, not in a header it has not got.
func admissionWording(detail string) string {
	return restAdmission.ReplaceAllStringFunc(detail, func(m string) string {
		switch {
		case strings.HasPrefix(m, "POST"):
			return "JoinWaitingRoom"
		case strings.HasPrefix(m, "GET"):
			return "GetQueueTicket"
		}
		return "queue-ticket metadata"
	})
}

// toError renders an error the service returned (not stored) exactly as REST renders it, and
// adds what only makes sense live: retry-after metadata for the codes that promise it.
func toError(err error) *connect.Error {
	resp := bohttp.Renderer{}.Problem(err)
	e := problemError(resp)
	code := boxoffice.ErrorCode(err)
	var d time.Duration
	if be := boxoffice.AsError(err); be != nil {
		d = be.RetryAfter
	}
	switch code {
	case boxoffice.EIDEMINPROGRESS, boxoffice.EOVERLOADED, boxoffice.ERATELIMITED, boxoffice.EPAYMENTUNAVAILABLE:
		if d <= 0 {
			d = time.Second
		}
	}
	if d > 0 {
		secs := max(int((d+time.Second-1)/time.Second), 1)
		e.Meta().Set("Retry-After", strconv.Itoa(secs))
	}
	return e
}

// ProblemOf returns the Problem detail of an error returned by a Connect client, or nil.
func ProblemOf(err error) *boxofficev1.Problem {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return nil
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		if p, ok := v.(*boxofficev1.Problem); ok {
			return p
		}
	}
	return nil
}
