// Package server owns Herald's sockets: it binds the listeners (plain and
// TLS), runs their accept loops, hands each connection to the protocol
// that listener serves, and on shutdown stops accepting, drains and, past
// the deadline, closes what is left. What runs on a connection is the
// protocol adapters' business; what is built and in which order is
// internal/app's.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Off disables a listener when given as its address.
const Off = "off"

// Enabled reports whether a listen address asks for a listener: "" and
// "off" do not.
func Enabled(addr string) bool { return addr != "" && !strings.EqualFold(addr, Off) }

// TLSConfig enables the TLS listeners (AMQPS, MQTTS, STOMP over TLS,
// HTTPS) with certificates from files.
type TLSConfig struct {
	CertFile string // PEM certificate chain
	KeyFile  string // PEM private key
	// ClientCAFile, if set, makes every TLS listener require a client
	// certificate signed by one of these CAs.
	ClientCAFile string
}

// Spec is one socket to bind and what serves its connections: Conn for a
// raw protocol (AMQP, MQTT, STOMP), HTTP for an HTTP listener.
type Spec struct {
	Name string // "amqp", "mqtts", "http", ...: the key of Addr
	Addr string // listen address; see Enabled
	TLS  bool
	// Hint says what to do when the address is taken.
	Hint string
	Conn func(context.Context, net.Conn)
	// ConnDetached, when set, is used instead of Conn by a protocol whose
	// idle connections live on without a goroutine (kit.IdlePoller): it
	// may return while the connection lives on, and calls ended exactly
	// once when the connection is gone. Shutdown waits for ended.
	ConnDetached func(ctx context.Context, nc net.Conn, ended func())
	HTTP         http.Handler
	// ReadHeaderTimeout bounds how long an HTTP client may take to send
	// its request headers, a WebSocket upgrade's included (slowloris);
	// 0 = HTTPReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
}

// HTTPReadHeaderTimeout bounds how long a client may take to send its
// request headers (slowloris): Spec.ReadHeaderTimeout's default.
const HTTPReadHeaderTimeout = 10 * time.Second

// Listeners binds sockets and owns every goroutine that serves them.
type Listeners struct {
	log *slog.Logger
	tls TLSConfig

	// ctx is handed to every connection; it ends when Shutdown starts.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loops and connection handlers

	// admit, when set, is called by every accept loop with each accepted
	// connection before it is served, and may wait (SetAdmission).
	admit func(context.Context)

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[net.Conn]struct{}
	addrs     map[string]net.Addr // bound listeners by name
	https     []*http.Server
}

// New returns Listeners that bind nothing yet.
func New(log *slog.Logger, t TLSConfig) *Listeners {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Listeners{log: log, tls: t, ctx: ctx, cancel: cancel,
		conns: make(map[net.Conn]struct{}), addrs: make(map[string]net.Addr)}
}

// Context ends when Shutdown starts; background work that lives as long
// as the listeners can watch it.
func (l *Listeners) Context() context.Context { return l.ctx }

// Go runs f as a goroutine that Shutdown waits for.
func (l *Listeners) Go(f func()) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f()
	}()
}

// SetAdmission makes every accept loop call wait with each connection it
// accepts, before the connection is served or the next one accepted: the
// memory alarm holds new connections there while it is raised, so that
// they wait in the kernel's accept queue (costing the broker nothing)
// instead of each taking its buffers, goroutine and session. wait gets the
// listeners' context and must return once it ends. Call before Listen.
func (l *Listeners) SetAdmission(wait func(context.Context)) { l.admit = wait }

// Listen binds every enabled spec and starts serving it. On an error the
// specs bound before it keep serving; Shutdown stops them.
func (l *Listeners) Listen(specs []Spec) error {
	var tlsConf *tls.Config
	for _, sp := range specs {
		if !Enabled(sp.Addr) {
			continue
		}
		ln, err := net.Listen("tcp", sp.Addr)
		if err != nil {
			return fmt.Errorf("cannot listen for %s on %s: %w (%s)", sp.Name, sp.Addr, err, sp.Hint)
		}
		if sp.TLS {
			if tlsConf == nil {
				if tlsConf, err = loadTLS(l.tls); err != nil {
					_ = ln.Close()
					return err
				}
			}
			ln = tls.NewListener(ln, tlsConf)
		}
		if l.admit != nil {
			ln = &admitListener{Listener: ln, ctx: l.ctx, admit: l.admit}
		}
		l.mu.Lock()
		l.addrs[sp.Name] = ln.Addr()
		if sp.HTTP == nil {
			// An HTTP listener is closed by its server's Shutdown, which
			// tells it apart from a failure.
			l.listeners = append(l.listeners, ln)
		}
		l.mu.Unlock()
		if sp.HTTP != nil {
			l.serveHTTP(ln, sp.HTTP, sp.ReadHeaderTimeout)
		} else if sp.ConnDetached != nil {
			l.accept(ln, nil, sp.ConnDetached)
		} else {
			l.accept(ln, sp.Conn, nil)
		}
	}
	return nil
}

func loadTLS(t TLSConfig) (*tls.Config, error) {
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, errors.New("a TLS listener is enabled but no certificate is configured: give --tls-cert and --tls-key")
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cannot load the TLS certificate %s / key %s: %w", t.CertFile, t.KeyFile, err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read the client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", t.ClientCAFile)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}

// accept runs ln's accept loop, one goroutine per connection running
// handle until the connection ends, or detached until it calls ended.
func (l *Listeners) accept(ln net.Listener, handle func(context.Context, net.Conn), detached func(context.Context, net.Conn, func())) {
	l.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				l.log.Warn("accept failed", "addr", ln.Addr().String(), "err", err)
				continue
			}
			l.mu.Lock()
			l.conns[nc] = struct{}{}
			l.mu.Unlock()
			if detached != nil {
				l.wg.Add(1)
				go detached(l.ctx, nc, func() {
					l.mu.Lock()
					delete(l.conns, nc)
					l.mu.Unlock()
					l.wg.Done()
				})
				continue
			}
			l.Go(func() {
				defer func() {
					l.mu.Lock()
					delete(l.conns, nc)
					l.mu.Unlock()
				}()
				handle(l.ctx, nc)
			})
		}
	})
}

func (l *Listeners) serveHTTP(ln net.Listener, h http.Handler, readHeader time.Duration) {
	if readHeader <= 0 {
		readHeader = HTTPReadHeaderTimeout
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: readHeader, ErrorLog: slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
		// WebSocket sessions (MQTT, STOMP) see server shutdown through this.
		BaseContext: func(net.Listener) context.Context { return l.ctx }}
	l.mu.Lock()
	l.https = append(l.https, hs)
	l.mu.Unlock()
	l.Go(func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("http listener failed", "addr", ln.Addr().String(), "err", err)
		}
	})
}

// Addr is the bound address of the named listener, or nil when it is off.
func (l *Listeners) Addr(name string) net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addrs[name]
}

// Shutdown stops accepting and ends Context, so every connection is asked
// to close; endStreams then ends the HTTP handlers that never return on
// their own (WebSocket, SSE) before the HTTP servers drain. It waits for
// every connection until ctx ends, after which the remaining sockets are
// closed hard.
func (l *Listeners) Shutdown(ctx context.Context, endStreams func()) error {
	l.mu.Lock()
	for _, ln := range l.listeners {
		_ = ln.Close()
	}
	l.listeners = nil
	hs := l.https
	l.mu.Unlock()
	l.cancel()
	if endStreams != nil {
		endStreams()
	}
	for _, h := range hs {
		_ = h.Shutdown(ctx)
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		for nc := range l.conns {
			_ = nc.Close()
		}
		l.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// admitListener holds each accepted connection in Accept until admit lets
// it through, so one accept loop (and http.Server's) waits with at most one
// connection while the rest queue in the kernel.
type admitListener struct {
	net.Listener
	ctx   context.Context
	admit func(context.Context)
}

func (a *admitListener) Accept() (net.Conn, error) {
	nc, err := a.Listener.Accept()
	if err == nil {
		a.admit(a.ctx)
	}
	return nc, err
}
