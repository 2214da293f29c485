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
	"time"
)

// TLSConfig enables the TLS listeners (AMQPS, MQTTS, STOMP over TLS,
// HTTPS) with certificates from files.
type TLSConfig struct {
	CertFile string // PEM certificate chain
	KeyFile  string // PEM private key
	// ClientCAFile, if set, makes every TLS listener require a client
	// certificate signed by one of these CAs.
	ClientCAFile string
}

// listener is one socket the server binds.
type listener struct {
	name, addr string
	tls        bool
	serve      func(net.Listener) // runs the accept loop; returns at once
	hint       string             // what to do when the address is taken
}

func (s *Server) listenerSpecs() []listener {
	c := s.cfg
	var ls []listener
	if s.web != nil {
		ls = append(ls, listener{name: "http", addr: c.HTTPAddr, serve: s.serveHTTP(false), hint: "is RabbitMQ's management plugin or another Herald running? pick another address with --http, or --http off"})
		ls = append(ls, listener{name: "https", addr: c.HTTPSAddr, tls: true, serve: s.serveHTTP(true), hint: "pick another address with --https, or --https off"})
	}
	ls = append(ls,
		listener{name: "mqtt", addr: c.MQTTAddr, serve: s.acceptWith(s.mqtt.ServeConn), hint: "is mosquitto or another broker running? pick another address with --mqtt, or --mqtt off"},
		listener{name: "mqtts", addr: c.MQTTSAddr, tls: true, serve: s.acceptWith(s.mqtt.ServeConn), hint: "pick another address with --mqtts, or --mqtts off"},
		listener{name: "stomp", addr: c.STOMPAddr, serve: s.acceptWith(s.stomp.ServeConn), hint: "pick another address with --stomp, or --stomp off"},
		listener{name: "stomps", addr: c.STOMPSAddr, tls: true, serve: s.acceptWith(s.stomp.ServeConn), hint: "pick another address with --stomps, or --stomps off"},
		listener{name: "amqp", addr: c.AMQPAddr, serve: s.acceptWith(s.amqp.ServeConn), hint: "is another broker running? pick another address with --amqp, or --amqp off"},
		listener{name: "amqps", addr: c.AMQPSAddr, tls: true, serve: s.acceptWith(s.amqp.ServeConn), hint: "pick another address with --amqps, or --amqps off"},
	)
	return ls
}

// listen binds every enabled listener.
func (s *Server) listen() error {
	var tlsConf *tls.Config
	for _, l := range s.listenerSpecs() {
		if !enabled(l.addr) {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("cannot listen for %s on %s: %w (%s)", l.name, l.addr, err, l.hint)
		}
		if l.tls {
			if tlsConf == nil {
				if tlsConf, err = s.loadTLS(); err != nil {
					_ = ln.Close()
					return err
				}
			}
			ln = tls.NewListener(ln, tlsConf)
		}
		s.mu.Lock()
		s.addrs[l.name] = ln.Addr()
		s.mu.Unlock()
		l.serve(ln)
	}
	return nil
}

func (s *Server) loadTLS() (*tls.Config, error) {
	t := s.cfg.TLS
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

// acceptWith returns a serve function running handle per connection.
func (s *Server) acceptWith(handle func(context.Context, net.Conn)) func(net.Listener) {
	return func(ln net.Listener) { s.serve(ln, handle) }
}

func (s *Server) serveHTTP(secure bool) func(net.Listener) {
	return func(ln net.Listener) {
		h := &http.Server{Handler: s.web.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
			// WebSocket sessions (MQTT, STOMP) see server shutdown through this.
			BaseContext: func(net.Listener) context.Context { return s.ctx }}
		if secure {
			s.https = h
		} else {
			s.http = h
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := h.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http listener failed", "addr", ln.Addr().String(), "err", err)
			}
		}()
	}
}

// Addr is the bound address of the named listener ("amqp", "amqps",
// "mqtt", "mqtts", "stomp", "stomps", "http", "https"), or nil when off.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[name]
}

// AMQPAddr is the bound AMQP address, or nil when the listener is off.
func (s *Server) AMQPAddr() net.Addr { return s.Addr("amqp") }

// MQTTAddr is the bound MQTT address, or nil when the listener is off.
func (s *Server) MQTTAddr() net.Addr { return s.Addr("mqtt") }

// STOMPAddr is the bound STOMP address, or nil when the listener is off.
func (s *Server) STOMPAddr() net.Addr { return s.Addr("stomp") }

// HTTPAddr is the bound HTTP address, or nil when the listener is off.
func (s *Server) HTTPAddr() net.Addr { return s.Addr("http") }
