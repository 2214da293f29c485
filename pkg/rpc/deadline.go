package rpc

import (
	"context"
	"sync"
	"time"
)

// deadlineCtx is a handler's context: the request's deadline over the
// connection's context. It is context.WithDeadline made lazy: the timer
// (and the cancellation wiring to the parent) exists only once the
// handler asks for Done or Err, so the many handlers that only pass ctx
// along or read Deadline cost no timer per request.
type deadlineCtx struct {
	context.Context // the parent: values, and cancellation once started
	deadline        time.Time

	mu       sync.Mutex
	ctx      context.Context // the real WithDeadline, built by started
	cancel   context.CancelFunc
	released bool // the handler returned: a late start is born cancelled
}

func (c *deadlineCtx) started() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil {
		c.ctx, c.cancel = context.WithDeadline(c.Context, c.deadline)
		if c.released {
			c.cancel()
		}
	}
	return c.ctx
}

// Deadline is the earlier of the request's deadline and the parent's.
func (c *deadlineCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *deadlineCtx) Done() <-chan struct{} { return c.started().Done() }

func (c *deadlineCtx) Err() error { return c.started().Err() }

// release is the cancel of WithDeadline: the handler has returned, so
// its context ends (a goroutine it left behind sees Done closed).
func (c *deadlineCtx) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released = true
	if c.cancel != nil {
		c.cancel()
	}
}
