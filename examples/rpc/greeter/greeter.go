// Package greeter is the service of the RPC examples: its request and
// reply types (what a Go client imports) and its Go implementation. The
// Node version in ../node answers the same calls the same way.
package greeter

import (
	"context"
	"math"

	"github.com/heraldmq/herald/pkg/rpc"
)

// Name is the service's name: its queue is rpc.greeter, its methods are
// called as greeter.Greet and greeter.Add.
const Name = "greeter"

type GreetRequest struct {
	Name string `json:"name"`
}

type GreetReply struct {
	Greeting string `json:"greeting"`
	// By says which implementation answered ("go" or "node").
	By string `json:"by"`
}

type AddRequest struct {
	A int64 `json:"a"`
	B int64 `json:"b"`
}

type AddReply struct {
	Sum int64 `json:"sum"`
}

// Service is the Go implementation.
type Service struct{}

// Greet says hello; a request without a name is INVALID_ARGUMENT.
func (Service) Greet(ctx context.Context, req *GreetRequest) (*GreetReply, error) {
	if req.Name == "" {
		return nil, rpc.Errorf(rpc.InvalidArgument, "name is required")
	}
	return &GreetReply{Greeting: "Hello, " + req.Name + "!", By: "go"}, nil
}

// Add adds; a sum that overflows is OUT_OF_RANGE.
func (Service) Add(ctx context.Context, req *AddRequest) (*AddReply, error) {
	if (req.B > 0 && req.A > math.MaxInt64-req.B) || (req.B < 0 && req.A < math.MinInt64-req.B) {
		return nil, rpc.Errorf(rpc.OutOfRange, "%d + %d overflows", req.A, req.B)
	}
	return &AddReply{Sum: req.A + req.B}, nil
}
