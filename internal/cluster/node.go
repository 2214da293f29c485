// Package cluster runs Herald's cluster mode on hashicorp/raft: the nodes
// named by --node-name, reachable on --cluster-addr, form one Raft group;
// every change to the definitions (the broker's commands, the users and
// permissions) is an entry of its log, applied on every node by the FSM
// (fsm.go) through broker.Apply. The broker knows none of this: it calls
// the broker.Replicator this package implements.
//
// On disk (<data-dir>/raft): raft.db, the Raft log and stable store
// (bbolt, through raft-boltdb); snapshot directories (hashicorp/raft's
// file snapshot store, CRC-64 checked); applied, the last log index this
// node's definitions include, in decimal. A log entry's data is
//
//	+----------------+---------------------------------------------+
//	| CRC-32C (4, BE)| JSON {"origin","req","command"|"users"}      |
//	+----------------+---------------------------------------------+
//
// where the CRC (Castagnoli) covers the JSON, "command" is
// broker.EncodeCommand's encoding and "users" the users section of the
// definitions document. A snapshot is JSON {"index", "definitions"}.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

// Config is one node's part of a cluster.
type Config struct {
	// NodeName is this node's Raft server ID and its name in /api/nodes.
	NodeName string
	// Addr is the cluster address to listen on and to be reached at
	// (host:port; the host must be one the other nodes can dial).
	Addr string
	// Advertise, when set, is the address the other nodes dial instead of
	// Addr (NAT, containers, a proxy in front of the port).
	Advertise string
	// Join lists the other nodes' cluster addresses.
	Join []string
	// TLS, when set, makes the cluster port mutual TLS (tls.go).
	TLS TLSFiles
	// Dir holds the Raft log, stable store and snapshots (<data-dir>/raft).
	Dir    string
	Broker *broker.Broker
	Users  *auth.Users
	Logger *slog.Logger
	Tuning Tuning
}

// Tuning are Raft's timeouts and snapshot settings; a zero Heartbeat
// takes defaultTuning's timeouts, zero snapshot fields Herald's defaults.
type Tuning struct {
	Heartbeat, Election, LeaderLease, Commit time.Duration
	// SnapshotThreshold is how many new entries make a snapshot due (1024);
	// TrailingLogs how many entries a snapshot leaves in the log for
	// followers a little behind (10240); SnapshotInterval how often the
	// threshold is checked (30 s).
	SnapshotThreshold, TrailingLogs uint64
	SnapshotInterval                time.Duration
}

// defaultTuning suits a LAN: a dead leader is replaced within about two
// seconds.
var defaultTuning = Tuning{Heartbeat: 500 * time.Millisecond, Election: 500 * time.Millisecond,
	LeaderLease: 250 * time.Millisecond, Commit: 5 * time.Millisecond}

// Node is a running cluster member.
type Node struct {
	cfg      Config
	log      *slog.Logger
	raft     *raft.Raft
	fsm      *fsm
	store    *raftboltdb.BoltStore
	mux      *mux
	trans    *raft.NetworkTransport
	hasState atomic.Bool
	reqSeq   atomic.Uint64
	waiters  sync.Map // request number -> chan applied
	qprop    *qproposer
	observer *raft.Observer
	// Replicas' cache of the members' state.
	replicasMu      sync.Mutex
	replicasAt      time.Time
	members, online []string
	ctx             context.Context
	cancel          context.CancelFunc
	wg              sync.WaitGroup
	closeOnce       sync.Once
}

// applied is what the FSM produced for an entry this node proposed.
type applied struct {
	res broker.Result
	err error
}

// Start opens (or creates) the node's Raft state under cfg.Dir, listens on
// the cluster address and, if this node has never been part of the
// cluster, forms it with the nodes of cfg.Join in the background. The
// caller restores the node's own saved definitions before, and hands the
// node to Broker.SetReplicator after.
func Start(cfg Config) (*Node, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("cluster mode needs a node name (--node-name)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	t := cfg.Tuning
	if t.Heartbeat <= 0 {
		t.Heartbeat, t.Election, t.LeaderLease, t.Commit = defaultTuning.Heartbeat, defaultTuning.Election, defaultTuning.LeaderLease, defaultTuning.Commit
	}
	adv := cfg.Addr
	if cfg.Advertise != "" {
		adv = cfg.Advertise
	}
	host, _, err := net.SplitHostPort(adv)
	if err != nil {
		return nil, fmt.Errorf("cluster address %q: %w", adv, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return nil, fmt.Errorf("cluster address %q: give the address the other nodes dial (a host or IP, not %q), or set --cluster-advertise", adv, host)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("cannot create %s: %w", cfg.Dir, err)
	}
	logPath := filepath.Join(cfg.Dir, "raft.db")
	if err := verifyLog(logPath); err != nil {
		return nil, err
	}
	store, err := raftboltdb.NewBoltStore(logPath)
	if err != nil {
		return nil, fmt.Errorf("cannot open the Raft log %s: %w", logPath, err)
	}
	hl := newHCLogger(cfg.Logger.With("component", "raft"))
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hl)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cannot open the Raft snapshots in %s: %w", cfg.Dir, err)
	}
	ctls, err := loadTLS(cfg.TLS)
	if err != nil {
		store.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cannot listen on the cluster address %s: %w", cfg.Addr, err)
	}
	advertise, err := net.ResolveTCPAddr("tcp", adv)
	if err != nil || advertise.Port == 0 {
		advertise, _ = ln.Addr().(*net.TCPAddr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{cfg: cfg, log: cfg.Logger.With("component", "cluster"), store: store, ctx: ctx, cancel: cancel}
	n.mux = newMux(ln, ctls, n.log, advertise, n.serveRPC)
	if ctls == nil {
		n.log.Warn("the cluster port has no TLS: whoever reaches it can change definitions and users; keep it on a private network, or set --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca", "addr", cfg.Addr)
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: streamLayer{n.mux}, MaxPool: 3,
		Timeout: 10 * time.Second, Logger: hl})
	n.qprop = newQProposer(n)
	n.fsm, err = newFSM(n, cfg.Dir)
	if err != nil {
		n.closeTransport()
		store.Close()
		cancel()
		return nil, err
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeName)
	rc.Logger = hl
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout, rc.CommitTimeout = t.Heartbeat, t.Election, t.LeaderLease, t.Commit
	rc.SnapshotThreshold, rc.TrailingLogs, rc.SnapshotInterval = 1024, 10240, 30*time.Second
	if t.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = t.SnapshotThreshold
	}
	if t.TrailingLogs > 0 {
		rc.TrailingLogs = t.TrailingLogs
	}
	if t.SnapshotInterval > 0 {
		rc.SnapshotInterval = t.SnapshotInterval
	}
	// The node's definitions are restored from its own data dir (which is
	// at least as new as its last snapshot); a snapshot is loaded only when
	// the leader sends one to a node that fell behind.
	rc.NoSnapshotRestoreOnStart = true
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		n.closeTransport()
		store.Close()
		cancel()
		return nil, fmt.Errorf("cannot read the Raft state in %s: %w", cfg.Dir, err)
	}
	n.hasState.Store(has)
	if err := restoreQuorum(cfg.Broker, n.fsm, snaps); err != nil {
		n.closeTransport()
		store.Close()
		cancel()
		return nil, err
	}
	r, err := raft.NewRaft(rc, n.fsm, store, store, snaps, n.trans)
	if err != nil {
		n.closeTransport()
		store.Close()
		cancel()
		return nil, fmt.Errorf("cannot start Raft: %w", err)
	}
	n.raft = r
	n.startQuorum()
	// Accept only now: the RPC handlers use n.raft (connections that came
	// meanwhile wait in the listen backlog).
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.mux.run()
	}()
	if !has {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.form()
		}()
	}
	n.log.Info("cluster node started", "node", cfg.NodeName, "addr", advertise.String(), "listen", ln.Addr().String(), "join", cfg.Join, "rejoined", has)
	return n, nil
}

func (n *Node) closeTransport() {
	n.mux.close()
	_ = n.trans.Close()
}

// Name is this node's name.
func (n *Node) Name() string { return n.cfg.NodeName }

// Close leaves the Raft group running on the others: it stops this
// node's Raft (no leadership transfer: a restart rejoins as the same
// member), its listener and its background work.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		n.cfg.Broker.SetQuorumLog(nil)
		n.cancel()
		n.raft.DeregisterObserver(n.observer)
		err = n.raft.Shutdown().Error()
		n.closeTransport()
		n.wg.Wait()
		if cerr := n.store.Close(); err == nil {
			err = cerr
		}
		n.fsm.close()
	})
	return err
}

// form makes a cluster of this node and the nodes at cfg.Join when none
// of them has Raft state yet: every node asks every other for its name
// and address and bootstraps the same configuration (the same on every
// node, which hashicorp/raft allows). A node that finds the others have
// already bootstrapped that very configuration and done nothing since
// bootstraps it too (so that it holds the configuration at once); one
// that finds a cluster with history asks to be added instead.
func (n *Node) form() {
	self := raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.NodeName), Address: n.trans.LocalAddr()}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
		if n.hasState.Load() || n.raft.LastIndex() > 0 {
			return // another node's leader reached us first
		}
		servers := []raft.Server{self}
		var existing []response
		via := ""
		all := true
		for _, addr := range n.cfg.Join {
			resp, err := n.mux.call(addr, request{Op: opHello}, 2*time.Second)
			if err != nil || resp.Name == "" {
				all = false
				continue
			}
			if resp.Name == n.cfg.NodeName {
				if addr != string(self.Address) && attempt == 0 {
					n.log.Warn("a node at a --join address has this node's name; node names must be unique", "addr", addr, "name", resp.Name)
				}
				continue // --join may list this node too
			}
			if resp.HasState {
				existing, via = append(existing, resp), addr
			}
			peer := resp.Addr // as it advertises itself, so every node writes the same configuration
			if peer == "" {
				peer = addr
			}
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(resp.Name), Address: raft.ServerAddress(peer)})
		}
		sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
		if len(existing) > 0 && !(all && sameBootstrap(existing, servers)) {
			if err := n.join(via); err != nil {
				n.log.Debug("joining the cluster", "via", via, "err", err)
				continue
			}
			n.hasState.Store(true)
			n.log.Info("joined the cluster", "via", via)
			return
		}
		if !all {
			if attempt%20 == 19 {
				n.log.Info("waiting for the other nodes to form the cluster", "join", n.cfg.Join)
			}
			continue
		}
		err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.log.Warn("bootstrapping the cluster", "err", err)
			continue
		}
		n.hasState.Store(true)
		n.log.Info("cluster formed", "servers", len(servers))
		return
	}
}

// sameBootstrap reports whether every node with state holds nothing but
// the bootstrap of exactly servers: bootstrapping the same is then safe
// (the same first entry) and spares this node the wait for the leader.
func sameBootstrap(existing []response, servers []raft.Server) bool {
	for _, r := range existing {
		if r.LastIndex > 1 || len(r.Servers) != len(servers) {
			return false
		}
		for i, s := range r.Servers {
			if s != servers[i] {
				return false
			}
		}
	}
	return true
}

// join asks the leader, through the node at addr, to add this node.
func (n *Node) join(addr string) error {
	return n.toLeader(request{Op: opJoin, Name: n.cfg.NodeName, Addr: string(n.trans.LocalAddr())}, addr)
}

// addVoter adds a node on the leader; a member with the same address is
// left alone.
func (n *Node) addVoter(name, addr string) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(name) && s.Address == raft.ServerAddress(addr) {
			return nil
		}
	}
	return n.raft.AddVoter(raft.ServerID(name), raft.ServerAddress(addr), 0, rpcTimeout).Error()
}

// toLeader performs req on the leader: here when this node leads, else by
// forwarding it, retrying while there is no leader or it changes, until
// rpcTimeout. via, if set, is asked first (before this node knows any
// leader).
func (n *Node) toLeader(req request, via string) error {
	deadline := time.Now().Add(rpcTimeout)
	var last error
	for time.Now().Before(deadline) {
		if n.ctx.Err() != nil {
			return errors.New("cluster node stopped")
		}
		addr, id := n.raft.LeaderWithID()
		var resp response
		var err error
		switch {
		case id == raft.ServerID(n.cfg.NodeName):
			resp = n.handle(req)
		case addr != "":
			resp, err = n.mux.call(string(addr), req, rpcTimeout)
		case via != "":
			resp, err = n.mux.call(via, req, rpcTimeout)
		default:
			err = errors.New("no leader elected")
		}
		if err == nil && resp.Err == "" {
			return nil
		}
		if err == nil {
			err = errors.New(resp.Err)
			if !resp.NotLeader {
				return err
			}
		}
		last = err
		select {
		case <-n.ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("cluster: no leader could take the change within %s: %w", rpcTimeout, last)
}

// Replicate implements broker.Replicator: the command goes to the leader,
// into the Raft log, and is applied on every node; the result is this
// node's application of it, so the caller reads its own writes.
func (n *Node) Replicate(c broker.Command) (broker.Result, error) {
	cmd, err := broker.EncodeCommand(c)
	if err != nil {
		return broker.Result{}, err
	}
	return n.propose(entry{Command: cmd})
}

// UsersChanged is the users database's change hook in cluster mode: the
// users and permissions, as a whole, become one entry unless they are what
// the log last applied (the FSM applying an entry triggers the hook too).
func (n *Node) UsersChanged() {
	if n.fsm.applyingUsers.Load() {
		return
	}
	defs := n.cfg.Users.ExportDefinitions()
	if n.fsm.sameUsers(defs) {
		return
	}
	if _, err := n.propose(entry{Users: &defs}); err != nil {
		n.log.Error("cannot replicate a change to users or permissions; it stays on this node", "err", err)
	}
}

func (n *Node) propose(e entry) (broker.Result, error) {
	e.Origin = n.cfg.NodeName
	e.Req = n.reqSeq.Add(1)
	ch := make(chan applied, 1)
	n.waiters.Store(e.Req, ch)
	defer n.waiters.Delete(e.Req)
	data, err := encodeEntry(e)
	if err != nil {
		return broker.Result{}, err
	}
	if err := n.toLeader(request{Op: opApply, Entry: data}, ""); err != nil {
		return broker.Result{}, &broker.Error{Code: broker.CodeResourceError, Text: err.Error()}
	}
	// Committed; this node applies it once it learns the commit index.
	select {
	case a := <-ch:
		return a.res, a.err
	case <-time.After(rpcTimeout):
		return broker.Result{}, &broker.Error{Code: broker.CodeResourceError, Text: "cluster: the change was committed but this node has not applied it yet"}
	case <-n.ctx.Done():
		return broker.Result{}, &broker.Error{Code: broker.CodeResourceError, Text: "cluster node stopped"}
	}
}

// deliver hands the FSM's result to the proposer waiting on this node.
func (n *Node) deliver(req uint64, a applied) {
	if ch, ok := n.waiters.Load(req); ok {
		select {
		case ch.(chan applied) <- a:
		default: // applied twice (a retried proposal): the first result stands
		}
	}
}

// RemoveNode removes a node from the cluster's configuration (herald ctl
// cluster remove-node), through the leader.
func (n *Node) RemoveNode(name string) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	found := false
	for _, s := range f.Configuration().Servers {
		found = found || s.ID == raft.ServerID(name)
	}
	if !found {
		return &broker.Error{Code: broker.CodeNotFound, Text: fmt.Sprintf("no node '%s' in the cluster", name)}
	}
	return n.toLeader(request{Op: opRemove, Name: name}, "")
}

// WaitLeader waits until the cluster has a leader this node knows of and
// this node holds the cluster's configuration (a node that joined learns
// it from the leader's log, a moment after its first heartbeat).
func (n *Node) WaitLeader(ctx context.Context) error {
	for {
		if _, id := n.raft.LeaderWithID(); id != "" && n.member() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// member reports whether this node's configuration lists it.
func (n *Node) member() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(n.cfg.NodeName) {
			return true
		}
	}
	return false
}

// ListenAddr is the address the node's cluster listener is bound to (the
// port the kernel chose, for --cluster-addr host:0).
func (n *Node) ListenAddr() net.Addr { return n.mux.ln.Addr() }
