// Package app is Herald's composition root: from a Config it builds the
// logger's children, the metrics, the message log, the broker, the
// protocol adapters and the HTTP front, restores the durable state, binds
// the listeners (internal/server) and shuts it all down in order. It is
// what cmd/herald serve and the end-to-end tests in test/ start.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/heraldmq/herald/internal/admin"
	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/cluster"
	"github.com/heraldmq/herald/internal/metrics"
	"github.com/heraldmq/herald/internal/protocol/amqp091"
	"github.com/heraldmq/herald/internal/protocol/httpapi"
	"github.com/heraldmq/herald/internal/protocol/mqtt"
	"github.com/heraldmq/herald/internal/protocol/stomp"
	"github.com/heraldmq/herald/internal/server"
	"github.com/heraldmq/herald/internal/store"
	"github.com/heraldmq/herald/internal/web"
)

// Off disables a listener when given as its address.
const Off = server.Off

// TLSConfig names the certificate files of the TLS listeners.
type TLSConfig = server.TLSConfig

// Config is everything a Server needs. Zero values take defaults.
type Config struct {
	// AMQPAddr is the AMQP 0-9-1 listen address (":5672"); "" or "off"
	// disables it; port 0 picks a free port (see Server.AMQPAddr).
	AMQPAddr string
	// HTTPAddr is the HTTP listen address (":15672", RabbitMQ's management
	// port): REST, WebSocket, SSE, management API. "" or "off" disables it.
	HTTPAddr string
	Web      web.Config
	// MQTTAddr is the MQTT 3.1.1/5 listen address (":1883"); "" or "off"
	// disables it. MQTT over WebSocket is served at /mqtt on HTTPAddr.
	MQTTAddr string
	MQTT     mqtt.Config
	// STOMPAddr is the STOMP listen address (":61613"); "" or "off"
	// disables it. STOMP over WebSocket is served at /stomp on HTTPAddr.
	STOMPAddr string
	STOMP     stomp.Config
	// AMQPSAddr, MQTTSAddr, STOMPSAddr and HTTPSAddr are the TLS listeners
	// (usually :5671, :8883, :61614, :15671); they need TLS.
	AMQPSAddr, MQTTSAddr, STOMPSAddr, HTTPSAddr string
	TLS                                         TLSConfig
	// HTTPReadHeaderTimeout bounds how long an HTTP client may take to
	// send its request headers, WebSocket upgrades included: the HTTP
	// listeners' handshake timeout (0 = server.HTTPReadHeaderTimeout, 10s).
	HTTPReadHeaderTimeout time.Duration
	// LoadDefinitions, when set, is a RabbitMQ definitions file imported
	// at start after the saved definitions (RabbitMQ's load_definitions).
	LoadDefinitions string
	// DataDir is where durable state lives.
	DataDir string
	AMQP    amqp091.Config
	Logger  *slog.Logger
	// Users defaults to a database holding only the default user
	// (DefaultUser/DefaultPass), with LoopbackUsers and BcryptCost applied.
	Users *auth.Users
	// DefaultUser and DefaultPass are the user created when Users is nil
	// (RabbitMQ's default_user/default_pass): administrator with all
	// permissions on "/"; "" means guest/guest. Saved definitions replace
	// it from the second start on.
	DefaultUser, DefaultPass string
	// LoopbackUsers may log in only from loopback addresses when Users is
	// nil (RabbitMQ's loopback_users); nil means guest, "none" or an empty
	// non-nil list nobody.
	LoopbackUsers []string
	// BcryptCost is the bcrypt cost of passwords set from now on (0 = the
	// default 10); tests lower it. It applies to a given Users too.
	BcryptCost int
	// ConsumerTimeout is the default x-consumer-timeout (0 = off).
	ConsumerTimeout time.Duration
	// QueueMemoryMessages bounds the persistent messages a durable queue
	// keeps in RAM; the rest wait in the log (0 = broker.DefaultMemoryMessages).
	QueueMemoryMessages int
	// StoreSegmentSize bounds a message log segment file (0 = the store's
	// default, 64 MiB); tests make it small to span many segments.
	StoreSegmentSize int64
	// StoreCompactInterval is how often the message log rewrites sparse
	// segments (0 = every minute).
	StoreCompactInterval time.Duration
	// MemoryHighWatermark is the share of total RAM above which publishers
	// are blocked (0 = the default 0.4; negative = off).
	MemoryHighWatermark float64
	// MemoryLimitBytes, when > 0, is the memory watermark in bytes
	// instead (RabbitMQ's vm_memory_high_watermark.absolute).
	MemoryLimitBytes uint64
	// DiskFreeLimit is the free space in DataDir below which publishers are
	// blocked (0 = the default 50 MB; negative = off).
	DiskFreeLimit int64
	// AlarmCheckInterval is how often memory and disk are checked (default 1s).
	AlarmCheckInterval time.Duration
	// MaxConnections bounds the client connections of every protocol
	// together, checked at login (0 = no limit). Vhost and user limits are
	// set through the management API (/api/vhost-limits, /api/user-limits).
	MaxConnections int
	// MaxPublishRate limits each AMQP, MQTT, STOMP and /ws connection to
	// this many published messages a second, and each user's HTTP
	// publishes likewise (0 = no limit); it fills in the protocol and web
	// configs' MaxPublishRate where those are 0.
	MaxPublishRate int
	// Cluster, with an Addr, makes this node a member of a cluster
	// (cluster.go); zero is single-node mode.
	Cluster ClusterConfig
}

// App is a running Herald instance.
type App struct {
	cfg    Config
	log    *slog.Logger
	broker *broker.Broker
	amqp   *amqp091.Handler
	mqtt   *mqtt.Handler
	stomp  *stomp.Handler
	mtr    *metrics.Metrics
	web    *web.Server
	lns    *server.Listeners
	defs   *definitionsFile
	// recoveredEntries is what the message log found at open.
	recoveredEntries int
	monitor          *resourceMonitor
	store            *store.Log
	cluster          *cluster.Node // nil in single-node mode
}

// New builds an instance; Start restores its state and binds its listeners.
func New(cfg Config) (*App, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Users == nil {
		cfg.Users = auth.NewUsers()
		if cfg.BcryptCost > 0 {
			cfg.Users.SetBcryptCost(cfg.BcryptCost)
		}
		if cfg.LoopbackUsers != nil {
			cfg.Users.SetLoopbackUsers(cfg.LoopbackUsers)
		}
		cfg.Users.PutDefaultUser(cfg.DefaultUser, cfg.DefaultPass)
	} else if cfg.BcryptCost > 0 {
		cfg.Users.SetBcryptCost(cfg.BcryptCost)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "./data"
	}
	for _, r := range []*int{&cfg.AMQP.MaxPublishRate, &cfg.MQTT.MaxPublishRate, &cfg.STOMP.MaxPublishRate, &cfg.Web.MaxPublishRate} {
		if *r == 0 {
			*r = cfg.MaxPublishRate
		}
	}
	if cfg.Web.JWT.Enabled() {
		// One verifier for every protocol: a JWT as the password on AMQP,
		// MQTT, STOMP and WebSocket, a bearer token on HTTP.
		v, err := auth.NewTokenVerifier(cfg.Web.JWT)
		if err != nil {
			return nil, fmt.Errorf("bearer token (JWT) settings: %w", err)
		}
		cfg.Users.SetTokenVerifier(v)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("cannot create data directory %q: %w (choose another with --data-dir)", cfg.DataDir, err)
	}
	if cfg.StoreCompactInterval <= 0 {
		cfg.StoreCompactInterval = time.Minute
	}
	// Metrics before the store, which reports its fsyncs to them; the
	// broker, built on the store, is attached below.
	mtr := metrics.New(nil)
	// The adapters count connections, refused logins and protocol errors.
	cfg.AMQP.Counters, cfg.MQTT.Counters, cfg.STOMP.Counters = mtr.Counters, mtr.Counters, mtr.Counters
	log, report, err := store.Open(filepath.Join(cfg.DataDir, "log"), store.Options{Logger: cfg.Logger.With("component", "store"),
		SegmentSize: cfg.StoreSegmentSize, CompactInterval: cfg.StoreCompactInterval, OnSync: mtr.ObserveFsync})
	if err != nil {
		return nil, fmt.Errorf("cannot open the message log in %q: %w", cfg.DataDir, err)
	}
	if report.CorruptRecords > 0 || report.TruncatedBytes > 0 {
		cfg.Logger.Warn("message log recovered with damage", "corrupt_records", report.CorruptRecords, "truncated_bytes", report.TruncatedBytes)
	}
	defs := &definitionsFile{path: filepath.Join(cfg.DataDir, definitionsFileName), log: cfg.Logger, users: cfg.Users}
	cfg.Users.OnChange(defs.changed) // user and permission changes save the file too
	b := broker.New(broker.Options{Logger: cfg.Logger, ConsumerTimeout: cfg.ConsumerTimeout, OnDefinitionsChange: defs.changed, Store: log, MemoryMessages: cfg.QueueMemoryMessages,
		StreamDir: filepath.Join(cfg.DataDir, "streams")})
	defs.broker = b
	b.SetMaxConnections(cfg.MaxConnections)
	s := &App{
		cfg:              cfg,
		log:              cfg.Logger,
		broker:           b,
		amqp:             amqp091.NewHandler(cfg.AMQP, b, cfg.Users, cfg.Logger.With("protocol", "amqp")),
		lns:              server.New(cfg.Logger, cfg.TLS),
		defs:             defs,
		store:            log,
		recoveredEntries: report.Entries,
	}
	if cfg.MQTT.AnonymousUser == "" {
		cfg.MQTT.AnonymousUser = cfg.DefaultUser // RabbitMQ's mqtt.default_user follows default_user
	}
	s.mqtt = mqtt.NewHandler(cfg.MQTT, b, cfg.Users, cfg.Logger.With("protocol", "mqtt"))
	s.stomp = stomp.NewHandler(cfg.STOMP, b, cfg.Users, cfg.Logger.With("protocol", "stomp"))
	mtr.SetBroker(b)
	s.mtr = mtr
	if server.Enabled(cfg.HTTPAddr) || server.Enabled(cfg.HTTPSAddr) {
		if cfg.Web.Version == "" {
			cfg.Web.Version = cfg.AMQP.Version
		}
		cfg.Web.MQTTWebSocket = http.HandlerFunc(s.mqtt.ServeWebSocket)
		cfg.Web.STOMPWebSocket = http.HandlerFunc(s.stomp.ServeWebSocket)
		cfg.Web.Metrics = s.mtr.Handler()
		cfg.Web.Counters = s.mtr.Counters
		if cfg.Web.Node == nil {
			cfg.Web.Node = s.nodeInfo
		}
		if cfg.Web.MaxMessageSize == 0 {
			cfg.Web.MaxMessageSize = int64(min(cfg.AMQP.MaxMessageSize, 1<<62))
		}
		s.web = web.New(cfg.Web, b, cfg.Users, cfg.Logger.With("protocol", "http"))
		mgmt := admin.Mount(s.web)
		if cfg.Cluster.Addr != "" {
			mgmt.SetCluster(clusterView{s})
		}
		httpapi.Mount(s.web)
	}
	s.monitor = newResourceMonitor(s, cfg) // before any request can reach s.nodeInfo
	return s, nil
}

// Broker is the instance's core, for tests and embedding.
func (s *App) Broker() *broker.Broker { return s.broker }

// Start prepares the data directory, restores the durable definitions and
// messages, and binds every enabled listener.
func (s *App) Start() (err error) {
	defer func() {
		if err != nil {
			s.stopCluster() // a node that cannot serve leaves the cluster port
		}
	}()
	if err := os.MkdirAll(s.cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("cannot create data directory %q: %w (choose another with --data-dir)", s.cfg.DataDir, err)
	}
	clustered := s.cfg.Cluster.Addr != ""
	if clustered {
		s.enableQuorum() // before the definitions declare the quorum queues
	}
	if err := s.defs.load(); err != nil {
		return err
	}
	if s.cfg.LoadDefinitions != "" && !clustered {
		if err := s.defs.loadExtra(s.cfg.LoadDefinitions); err != nil {
			return err
		}
	}
	clean, err := s.takeCleanShutdownMarker()
	if err != nil {
		return err
	}
	if _, n, err := s.broker.RecoverMessages(!clean); err != nil {
		return err
	} else if n > 0 {
		debug.FreeOSMemory() // give back what recovery used (its scan buffers, the index it built)
	}
	s.mqtt.RestoreSessions() // MQTT session expiry that ran on while the broker was down
	if clustered {
		// After recovery: from here on the leader's entries change the
		// definitions, and the queues have their messages back.
		if err := s.startCluster(); err != nil {
			return err
		}
		if s.cfg.LoadDefinitions != "" {
			// The import is replicated: it needs the cluster formed.
			ctx, cancel := context.WithTimeout(context.Background(), clusterFormTimeout)
			err := s.WaitCluster(ctx)
			cancel()
			if err != nil {
				return fmt.Errorf("--load-definitions in cluster mode waits for the cluster to elect a leader: none within %s (are the --join nodes up?)", clusterFormTimeout)
			}
			if err := s.loadExtraReplicated(); err != nil {
				return err
			}
		}
	}
	s.lns.Go(s.monitor.run)
	s.lns.SetAdmission(s.monitor.admit)
	return s.lns.Listen(s.listenerSpecs())
}

func (s *App) listenerSpecs() []server.Spec {
	c := s.cfg
	var ls []server.Spec
	if s.web != nil {
		h := s.web.Handler()
		ls = append(ls,
			server.Spec{Name: "http", Addr: c.HTTPAddr, HTTP: h, ReadHeaderTimeout: c.HTTPReadHeaderTimeout, Hint: "is RabbitMQ's management plugin or another Herald running? pick another address with --http, or --http off"},
			server.Spec{Name: "https", Addr: c.HTTPSAddr, TLS: true, HTTP: h, ReadHeaderTimeout: c.HTTPReadHeaderTimeout, Hint: "pick another address with --https, or --https off"})
	}
	return append(ls,
		server.Spec{Name: "mqtt", Addr: c.MQTTAddr, ConnDetached: s.mqtt.ServeConnDetached, Hint: "is mosquitto or another broker running? pick another address with --mqtt, or --mqtt off"},
		server.Spec{Name: "mqtts", Addr: c.MQTTSAddr, TLS: true, ConnDetached: s.mqtt.ServeConnDetached, Hint: "pick another address with --mqtts, or --mqtts off"},
		server.Spec{Name: "stomp", Addr: c.STOMPAddr, Conn: s.stomp.ServeConn, Hint: "pick another address with --stomp, or --stomp off"},
		server.Spec{Name: "stomps", Addr: c.STOMPSAddr, TLS: true, Conn: s.stomp.ServeConn, Hint: "pick another address with --stomps, or --stomps off"},
		server.Spec{Name: "amqp", Addr: c.AMQPAddr, Conn: s.amqp.ServeConn, Hint: "is another broker running? pick another address with --amqp, or --amqp off"},
		server.Spec{Name: "amqps", Addr: c.AMQPSAddr, TLS: true, Conn: s.amqp.ServeConn, Hint: "pick another address with --amqps, or --amqps off"},
	)
}

// Addr is the bound address of the named listener ("amqp", "amqps",
// "mqtt", "mqtts", "stomp", "stomps", "http", "https", "cluster"), or nil
// when off.
func (s *App) Addr(name string) net.Addr {
	if name == "cluster" {
		if s.cluster == nil {
			return nil
		}
		return s.cluster.ListenAddr()
	}
	return s.lns.Addr(name)
}

// AMQPAddr is the bound AMQP address, or nil when the listener is off.
func (s *App) AMQPAddr() net.Addr { return s.Addr("amqp") }

// MQTTAddr is the bound MQTT address, or nil when the listener is off.
func (s *App) MQTTAddr() net.Addr { return s.Addr("mqtt") }

// STOMPAddr is the bound STOMP address, or nil when the listener is off.
func (s *App) STOMPAddr() net.Addr { return s.Addr("stomp") }

// HTTPAddr is the bound HTTP address, or nil when the listener is off.
func (s *App) HTTPAddr() net.Addr { return s.Addr("http") }

// Shutdown stops accepting, asks every connection to close (AMQP clients
// get connection.close 320 CONNECTION_FORCED) and waits for them until ctx
// ends, after which the remaining sockets are closed hard; then it closes
// the broker and the message log and leaves the clean-shutdown marker.
func (s *App) Shutdown(ctx context.Context) error {
	var endStreams func()
	if s.web != nil {
		endStreams = s.web.Close // ends WebSocket and SSE streams so the HTTP servers can drain
	}
	err := s.lns.Shutdown(ctx, endStreams)
	s.stopCluster()
	s.mqtt.Close()
	s.broker.Close()
	if cerr := s.store.Close(); cerr != nil {
		s.log.Warn("closing the message log", "err", cerr)
		return err
	}
	s.leaveCleanShutdownMarker()
	return err
}

// loadExtraReplicated imports --load-definitions in cluster mode. A node
// that has just joined may find the leader unreachable for a moment (its
// forward fails with a resource error): the import, which leaves what
// exists alone, is tried again until clusterFormTimeout.
func (s *App) loadExtraReplicated() error {
	deadline := time.Now().Add(clusterFormTimeout)
	for {
		err := s.defs.loadExtra(s.cfg.LoadDefinitions)
		var be *broker.Error
		if err == nil || !errors.As(err, &be) || be.Code != broker.CodeResourceError || time.Now().After(deadline) {
			return err
		}
		s.log.Info("the definitions import could not reach the cluster's leader; trying again", "err", err)
		time.Sleep(250 * time.Millisecond)
	}
}
