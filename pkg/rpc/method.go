package rpc

import "context"

// Method is a typed stub for one method of a service:
//
//	greet := rpc.NewMethod[GreetRequest, GreetReply](client, "greeter.Greet")
//	reply, err := greet.Call(ctx, &GreetRequest{Name: "Ada"})
//
// Req and Resp are the handler's types; proto.Message types (as
// pointers) travel as application/protobuf, anything else as JSON.
type Method[Req, Resp any] struct {
	client *Client
	name   string
	opts   []CallOption
}

// NewMethod binds a method name ("service.Method") to its types. Options
// given here (e.g. Idempotent()) apply to every call of the stub.
func NewMethod[Req, Resp any](c *Client, name string, opts ...CallOption) *Method[Req, Resp] {
	return &Method[Req, Resp]{client: c, name: name, opts: opts}
}

// Name is the method's "service.Method".
func (m *Method[Req, Resp]) Name() string { return m.name }

// Call sends req and returns the decoded reply; errors as Client.Call.
func (m *Method[Req, Resp]) Call(ctx context.Context, req *Req, opts ...CallOption) (*Resp, error) {
	resp := new(Resp)
	all := m.opts
	if len(opts) > 0 {
		all = append(append([]CallOption(nil), m.opts...), opts...)
	}
	if err := m.client.Call(ctx, m.name, req, resp, all...); err != nil {
		return nil, err
	}
	return resp, nil
}
