package kit

import (
	"net"
	"sync"
	"testing"
)

func TestRegistry(t *testing.T) {
	var r Registry[*int]
	a, b := new(int), new(int)
	removeA := r.Add(a)
	removeB := r.Add(b)
	if r.Len() != 2 || len(r.Snapshot()) != 2 {
		t.Fatalf("len %d, snapshot %v", r.Len(), r.Snapshot())
	}
	removeA()
	if got := r.Snapshot(); len(got) != 1 || got[0] != b {
		t.Fatalf("after removing a: %v", got)
	}
	removeB()
	if r.Len() != 0 {
		t.Fatal("not empty")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Add(new(int))()
		}()
	}
	wg.Wait()
	if r.Len() != 0 {
		t.Fatal("concurrent add/remove left entries")
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "10.1.2.3:1": false} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if IsLoopback(a) != want {
			t.Errorf("IsLoopback(%s) = %v", addr, !want)
		}
	}
	if IsLoopback(&net.UnixAddr{Name: "x"}) {
		t.Error("a unix address counted as loopback")
	}
}

func TestVerifiedCertCNOfPlainConn(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	if cn := VerifiedCertCN(c1); cn != "" {
		t.Fatalf("plain conn has CN %q", cn)
	}
}

func TestWakeCoalesces(t *testing.T) {
	w := NewWake()
	w.Ring()
	w.Ring() // must not block
	<-w
	select {
	case <-w:
		t.Fatal("two rings woke twice")
	default:
	}
}
