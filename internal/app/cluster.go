package app

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"time"

	"github.com/heraldmq/herald/internal/admin"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/cluster"
)

// ClusterConfig turns on cluster mode (issue 19): the node joins a Raft
// group through which every definitions change goes. Empty Addr is
// single-node mode, exactly as without it.
type ClusterConfig struct {
	// NodeName is this node's name (--node-name), its Raft ID.
	NodeName string
	// Addr is the cluster address (--cluster-addr): Raft and forwarding.
	Addr string
	// Advertise is the address the other nodes dial when it is not Addr
	// (--cluster-advertise: NAT, containers, a proxy).
	Advertise string
	// Join lists the other nodes' cluster addresses (--join).
	Join []string
	// TLSCert, TLSKey and TLSCA make the cluster port mutual TLS
	// (--cluster-tls-cert, --cluster-tls-key, --cluster-tls-ca).
	TLSCert, TLSKey, TLSCA string
	// Tuning overrides Raft's timeouts and snapshot settings (tests); zero
	// takes the defaults.
	Tuning cluster.Tuning
}

// clusterFormTimeout bounds the wait for a leader at start when
// --load-definitions has something to replicate.
const clusterFormTimeout = 2 * time.Minute

// clusterView adapts the cluster node to what the management API reads;
// it is handed to admin in New, the node is started in Start.
type clusterView struct{ s *App }

func (v clusterView) Name() string { return v.s.cfg.Cluster.NodeName }

func (v clusterView) Nodes() []admin.ClusterNode {
	n := v.s.cluster
	if n == nil {
		return nil
	}
	st := n.Status(2 * time.Second)
	out := make([]admin.ClusterNode, len(st))
	for i, s := range st {
		out[i] = admin.ClusterNode{Name: s.Name, Addr: s.Addr, Running: s.Running, State: s.State, Leader: s.Leader,
			Term: s.Term, LastIndex: s.LastIndex, CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex, Lag: s.Lag, Voter: s.Voter}
	}
	return out
}

func (v clusterView) RemoveNode(name string) error {
	if v.s.cluster == nil {
		return &broker.Error{Code: broker.CodeResourceError, Text: "the cluster node is not started"}
	}
	return v.s.cluster.RemoveNode(name)
}

// startCluster starts the node once this node's saved definitions are
// restored, then sends every later definitions change (and users and
// permissions change) through Raft.
func (s *App) startCluster() error {
	c := s.cfg.Cluster
	n, err := cluster.Start(cluster.Config{NodeName: c.NodeName, Addr: c.Addr, Advertise: c.Advertise, Join: c.Join,
		TLS: cluster.TLSFiles{Cert: c.TLSCert, Key: c.TLSKey, CA: c.TLSCA},
		Dir: filepath.Join(s.cfg.DataDir, "raft"), Broker: s.broker, Users: s.cfg.Users, Logger: s.log, Tuning: c.Tuning})
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	s.cluster = n
	s.broker.SetReplicator(n)
	s.cfg.Users.OnChange(func() {
		s.defs.changed()
		n.UsersChanged()
	})
	return nil
}

// enableQuorum makes the quorum queues replicated ones (cluster mode),
// this start of the node being a new incarnation: consumers of the
// earlier ones ended with their process.
func (s *App) enableQuorum() {
	var b [8]byte
	_, _ = rand.Read(b[:])
	boot := binary.BigEndian.Uint64(b[:]) | 1 // never 0
	s.broker.EnableReplicatedQuorum(s.cfg.Cluster.NodeName, boot)
}

// WaitCluster waits until this node knows the cluster's leader (tests,
// --load-definitions in cluster mode).
func (s *App) WaitCluster(ctx context.Context) error {
	if s.cluster == nil {
		return nil
	}
	return s.cluster.WaitLeader(ctx)
}

// stopCluster leaves the Raft group (the others go on) and returns the
// broker to applying directly, for what shutdown still deletes.
func (s *App) stopCluster() {
	if s.cluster == nil {
		return
	}
	s.broker.SetReplicator(nil)
	s.cfg.Users.OnChange(s.defs.changed)
	if err := s.cluster.Close(); err != nil {
		s.log.Warn("stopping the cluster node", "err", err)
	}
}
