package cluster

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// One port carries two kinds of connection, told apart by their first
// byte: Raft's own RPCs (hashicorp/raft's network transport) and Herald's
// small request/response protocol (rpc.go) that forwards a change to the
// leader, forms the cluster and reports a node's state.
const (
	kindRaft byte = 'R'
	kindRPC  byte = 'F'
)

// mux accepts on the cluster address and sorts the connections.
type mux struct {
	ln        net.Listener // TLS when tls is set
	tls       *clusterTLS  // nil: plain TCP
	log       *slog.Logger
	advertise net.Addr
	raft      chan net.Conn
	serveRPC  func(net.Conn)
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	// conns are the Raft connections in both directions: the transport
	// keeps them in its pool and reader goroutines, and does not close
	// them at shutdown, so the mux does.
	connMu sync.Mutex
	conns  map[net.Conn]struct{}
}

func newMux(ln net.Listener, t *clusterTLS, log *slog.Logger, advertise net.Addr, serveRPC func(net.Conn)) *mux {
	if t != nil {
		ln = tls.NewListener(ln, t.server)
	}
	return &mux{ln: ln, tls: t, log: log, advertise: advertise, raft: make(chan net.Conn), serveRPC: serveRPC,
		closed: make(chan struct{}), conns: make(map[net.Conn]struct{})}
}

// run accepts until the listener is closed.
func (m *mux) run() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.sort(c)
		}()
	}
}

func (m *mux) sort(c net.Conn) {
	var b [1]byte
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if tc, ok := c.(*tls.Conn); ok {
		// A peer that is not a member, or speaks plain TCP to a TLS
		// port, ends here (one that connects and hangs up says nothing).
		if err := tc.Handshake(); err != nil {
			if !errors.Is(err, io.EOF) {
				m.log.Warn("cluster connection refused: TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
			}
			c.Close()
			return
		}
	}
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	switch b[0] {
	case kindRaft:
		t := m.track(c)
		if t == nil {
			c.Close()
			return
		}
		select {
		case m.raft <- t:
		case <-m.closed:
			c.Close()
		}
	case kindRPC:
		m.serveRPC(c)
	default:
		c.Close()
	}
}

// close stops accepting and waits for the connection sorters and RPC
// handlers (which end when their connection does or times out).
func (m *mux) close() {
	m.closeOnce.Do(func() {
		close(m.closed)
		m.ln.Close()
		m.connMu.Lock()
		conns := m.conns
		m.conns = nil
		for c := range conns {
			c.(*trackedConn).Conn.Close()
		}
		m.connMu.Unlock()
	})
	m.wg.Wait()
}

// track remembers a Raft connection until it or the mux closes; nil once
// the mux is closed.
func (m *mux) track(c net.Conn) net.Conn {
	m.connMu.Lock()
	defer m.connMu.Unlock()
	if m.conns == nil {
		return nil
	}
	t := &trackedConn{Conn: c, m: m}
	m.conns[t] = struct{}{}
	return t
}

// trackedConn forgets itself in the mux when closed.
type trackedConn struct {
	net.Conn
	m *mux
}

func (t *trackedConn) Close() error {
	t.m.connMu.Lock()
	if t.m.conns != nil {
		delete(t.m.conns, t)
	}
	t.m.connMu.Unlock()
	return t.Conn.Close()
}

// streamLayer is the Raft side of the mux (raft.StreamLayer).
type streamLayer struct{ m *mux }

var _ raft.StreamLayer = streamLayer{}

func (s streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.m.raft:
		return c, nil
	case <-s.m.closed:
		return nil, errors.New("cluster listener closed")
	}
}

// Close is called by the transport's shutdown; the mux closes with the node.
func (s streamLayer) Close() error { return nil }

func (s streamLayer) Addr() net.Addr { return s.m.advertise }

func (s streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := s.m.dial(string(addr), timeout, kindRaft)
	if err != nil {
		return nil, err
	}
	t := s.m.track(c)
	if t == nil {
		c.Close()
		return nil, errors.New("cluster listener closed")
	}
	return t, nil
}

// dial opens a connection of kind to the node at addr, over TLS when the
// cluster port has it.
func (m *mux) dial(addr string, timeout time.Duration, kind byte) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	var c net.Conn
	var err error
	if m.tls != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, m.tls.client)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
