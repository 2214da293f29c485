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
	fn       pointerMethod
	recv     unsafe.Pointer // a *T: the registered value, or a copy of it
	reqType  reflect.Type   // Req (what reflect.New allocates per request)
	respType reflect.Type   // Resp
}

// pointerMethod is a handler method as the method expression (*T).M,
// func(recv *T, ctx, req *Req) (*Resp, error), with its pointer types
// erased. Every pointer type is passed and returned alike (one word, in
// the same register or stack slot), so the method's code is called
// through this type as through its own: a plain call where
// reflect.Value.Call allocated its results (two allocations per request),
// boxed the context and looked the call's frame layout up in a sync.Map
// every time.
type pointerMethod func(recv unsafe.Pointer, ctx context.Context, req unsafe.Pointer) (unsafe.Pointer, error)

// methodsOf finds impl's handler methods. Exported methods of another
// shape are not endpoints and are left alone (a service type may well have
// helpers); a value with no handler method at all is an error.
func methodsOf(impl any) (map[string]handlerMethod, error) {
	v := reflect.ValueOf(impl)
	t := v.Type()
	// Methods are called on a pointer, so that the receiver is one word:
	// a value registered as such is copied once behind a pointer, and
	// its methods are called through *T's, which copy it per call as a
	// value receiver always does.
	ptr := v
	if t.Kind() != reflect.Pointer {
		ptr = reflect.New(t)
		ptr.Elem().Set(v)
	}
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
		pm, _ := ptr.Type().MethodByName(m.Name) // *T has every method of T
		h := handlerMethod{recv: ptr.UnsafePointer(), reqType: mt.In(2).Elem(), respType: mt.Out(0).Elem()}
		// Stored through reflect with the method's own type: nothing is
		// assumed about how an interface holds a func.
		reflect.NewAt(pm.Func.Type(), unsafe.Pointer(&h.fn)).Elem().Set(pm.Func)
		methods[m.Name] = h
	}
	if len(methods) == 0 {
		return nil, fmt.Errorf("rpc: %T has no method of the form func(context.Context, *Req) (*Resp, error)", impl)
	}
	return methods, nil
}

// call runs the method on req (a *Req). A nil *Resp with a nil error is
// answered as the zero Resp so the caller always gets a decodable body.
func (h handlerMethod) call(ctx context.Context, req reflect.Value) (any, error) {
	out, err := h.fn(h.recv, ctx, req.UnsafePointer())
	if err != nil {
		return nil, err
	}
	if out == nil {
		return reflect.New(h.respType).Interface(), nil
	}
	return reflect.NewAt(h.respType, out).Interface(), nil
}

func sortedNames(m map[string]handlerMethod) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
