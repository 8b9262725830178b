package rpc

import (
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// codecs replace connect's own for two reasons. JSON requests are decoded strictly, as REST
// bodies are: an unknown field is an error, not silently dropped (a client that misspells
// "quantity" must hear of it, not buy one ticket). And a message that does not decode is
// described without Go type names: connect's own codecs say "unmarshal into
// *boxofficev1.PurchaseRequest", which tells a stranger how the server is built.
func codecs() []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithCodec(strictJSON{name: "json"}),
		connect.WithCodec(strictJSON{name: "json; charset=utf-8"}),
		connect.WithCodec(binaryProto{}),
	}
}

// message is v as a protobuf message; anything else is a programming error.
func message(v any) (proto.Message, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, errors.New("not a protobuf message")
	}
	return m, nil
}

// strictJSON is protojson that refuses unknown fields.
type strictJSON struct{ name string }

// Name is the codec's name in content types ("json").
func (c strictJSON) Name() string { return c.name }

// Marshal encodes a message as protojson.
func (strictJSON) Marshal(v any) ([]byte, error) {
	m, err := message(v)
	if err != nil {
		return nil, err
	}
	return protojson.Marshal(m)
}

// Unmarshal decodes protojson, refusing unknown fields.
func (strictJSON) Unmarshal(data []byte, v any) error {
	m, err := message(v)
	if err != nil {
		return err
	}
	if len(data) == 0 {
		return errors.New("the request message is empty; a JSON object is required")
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(data, m); err != nil {
		return fmt.Errorf("invalid request message: %w", err)
	}
	return nil
}

// binaryProto is the protobuf wire format, with errors that name no Go type.
type binaryProto struct{}

// Name is "proto".
func (binaryProto) Name() string { return "proto" }

// Marshal encodes a message in the wire format.
func (binaryProto) Marshal(v any) ([]byte, error) {
	m, err := message(v)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(m)
}

// Unmarshal decodes the wire format.
func (binaryProto) Unmarshal(data []byte, v any) error {
	m, err := message(v)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return fmt.Errorf("invalid request message: %w", err)
	}
	return nil
}
