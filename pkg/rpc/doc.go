// Package rpc is Herald's Go SDK for RPC services over AMQP 0-9-1: named
// services whose methods are called as "service.Method", with deadlines,
// typed stubs and client-side governance (retries, a circuit breaker per
// service, a rate limit). It speaks a plain convention over queues, so a
// service or a caller written in another language with any AMQP client
// interoperates; docs/rpc.md in the Herald repository describes it.
//
// A service is a Go value whose exported methods have the form
//
//	func (s *Greeter) Greet(ctx context.Context, req *GreetRequest) (*GreetReply, error)
//
// registered on a Server:
//
//	srv := rpc.NewServer(rpc.ServerConfig{ConnConfig: rpc.ConnConfig{URL: url}})
//	srv.Register(&Greeter{}, rpc.Service{Name: "greeter", Version: "1.0.0"})
//	srv.Start()
//	defer srv.Close() // drains: finishes the requests it has taken
//
// and called through a Client, untyped or with a generic stub:
//
//	c, _ := rpc.NewClient(rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: url}})
//	var reply GreetReply
//	err := c.Call(ctx, "greeter.Greet", &GreetRequest{Name: "Ada"}, &reply)
//	greet := rpc.NewMethod[GreetRequest, GreetReply](c, "greeter.Greet")
//	r, err := greet.Call(ctx, &GreetRequest{Name: "Ada"})
//
// A failed call returns an *Error carrying a gRPC status code; a handler
// chooses its status by returning rpc.Errorf(code, ...). Both Client and
// Server reconnect on their own after the broker restarts.
package rpc
