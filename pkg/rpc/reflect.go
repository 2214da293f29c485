package rpc

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"unsafe"
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
	fn       reflect.Value
	recv     reflect.Value // the registered value
	reqType  reflect.Type  // Req (what reflect.New allocates per request)
	respType reflect.Type  // Resp

	// direct is fn called without reflect, when the registered value is
	// a pointer (recvPtr): see pointerMethod.
	direct  pointerMethod
	recvPtr unsafe.Pointer
}

// pointerMethod is a handler method func(recv *T, ctx, req *Req) (*Resp,
// error) with its pointer types erased. Every pointer type is passed and
// returned alike (one pointer-sized word, in the same register or stack
// slot), so the method's code is called through this type as it is
// through its own: a plain call instead of reflect.Value.Call, which
// allocates its results (two allocations per request) and looks the
// call's frame layout up in a sync.Map every time. The receiver must be
// a pointer, so that it too is one word: a value receiver goes through
// reflect.
type pointerMethod func(recv unsafe.Pointer, ctx context.Context, req unsafe.Pointer) (unsafe.Pointer, error)

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
		h := handlerMethod{fn: m.Func, recv: v, reqType: mt.In(2).Elem(), respType: mt.Out(0).Elem()}
		if t.Kind() == reflect.Pointer {
			// Stored through reflect with the method's real type: no
			// assumption about how an interface holds a func.
			reflect.NewAt(m.Func.Type(), unsafe.Pointer(&h.direct)).Elem().Set(m.Func)
			h.recvPtr = v.UnsafePointer()
		}
		methods[m.Name] = h
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
	if h.direct != nil {
		out, err := h.direct(h.recvPtr, ctx, req.UnsafePointer())
		if err != nil {
			return nil, err
		}
		if out == nil {
			return reflect.New(h.respType).Interface(), nil
		}
		return reflect.NewAt(h.respType, out).Interface(), nil
	}
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
