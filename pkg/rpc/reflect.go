package rpc

import (
	"context"
	"fmt"
	"reflect"
	"sort"
)

var (
	contextType = reflect.TypeFor[context.Context]()
	errorType   = reflect.TypeFor[error]()
)

// handlerMethod is one exported method of a registered value that has the
// shape func(ctx context.Context, req *Req) (*Resp, error).
type handlerMethod struct {
	// fn is the method's function, called with recv as its first
	// argument: a method value (Value.Method) would cost reflect an
	// allocation per call to bind the receiver.
	fn      reflect.Value
	recv    reflect.Value // the registered value
	reqType reflect.Type  // Req (what reflect.New allocates per request)
}

// methodsOf finds impl's handler methods. Exported methods of another
// shape are not endpoints and are left alone (a service type may well have
// helpers); a value with no handler method at all is an error.
func methodsOf(impl any) (map[string]handlerMethod, error) {
	v := reflect.ValueOf(impl)
	t := v.Type()
	methods := map[string]handlerMethod{}
	for i := range t.NumMethod() {
		m := t.Method(i)
		mt := m.Type // includes the receiver as its first input
		if !m.IsExported() || mt.NumIn() != 3 || mt.NumOut() != 2 {
			continue
		}
		if mt.In(1) != contextType || mt.In(2).Kind() != reflect.Pointer ||
			mt.Out(0).Kind() != reflect.Pointer || mt.Out(1) != errorType {
			continue
		}
		methods[m.Name] = handlerMethod{fn: m.Func, recv: v, reqType: mt.In(2).Elem()}
	}
	if len(methods) == 0 {
		return nil, fmt.Errorf("rpc: %T has no method of the form func(context.Context, *Req) (*Resp, error)", impl)
	}
	return methods, nil
}

// callArgs are a worker's arguments to reflect's Call, reused from one
// request to the next: the slice would be an allocation per call, and so
// would the context, passed as a Value of its concrete type (reflect
// boxes it into the context.Context parameter); read through the
// interface-typed slot ctx it is passed as it is.
type callArgs struct {
	ctx  context.Context
	ctxv reflect.Value // ctx's slot: reflect.ValueOf(&a.ctx).Elem()
	in   [3]reflect.Value
}

func newCallArgs() *callArgs {
	a := &callArgs{}
	a.ctxv = reflect.ValueOf(&a.ctx).Elem()
	return a
}

// call runs the method. A nil *Resp with a nil error is answered as the
// zero Resp so the caller always gets a decodable body.
func (h handlerMethod) call(a *callArgs, ctx context.Context, req reflect.Value) (any, error) {
	a.ctx = ctx
	a.in = [3]reflect.Value{h.recv, a.ctxv, req}
	out := h.fn.Call(a.in[:])
	a.ctx, a.in = nil, [3]reflect.Value{} // hold nothing of the request
	if err, _ := out[1].Interface().(error); err != nil {
		return nil, err
	}
	if out[0].IsNil() {
		return reflect.New(out[0].Type().Elem()).Interface(), nil
	}
	return out[0].Interface(), nil
}

func sortedNames(m map[string]handlerMethod) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
