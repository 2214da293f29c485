package cluster

import (
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// NodeStatus is one node's Raft state as /api/nodes and herald ctl
// cluster status show it.
type NodeStatus struct {
	Name         string `json:"name"`
	Addr         string `json:"cluster_addr"`
	Running      bool   `json:"running"`
	State        string `json:"raft_state,omitempty"` // Leader, Follower, Candidate
	Leader       string `json:"raft_leader,omitempty"`
	Term         uint64 `json:"raft_term"`
	LastIndex    uint64 `json:"raft_last_index"`
	CommitIndex  uint64 `json:"raft_commit_index"`
	AppliedIndex uint64 `json:"raft_applied_index"`
	// Lag is how many entries the node has still to apply behind the
	// most advanced commit index among the nodes that answered.
	Lag   uint64 `json:"raft_lag"`
	Voter bool   `json:"raft_voter"`
}

func (n *Node) localStatus() NodeStatus {
	_, leader := n.raft.LeaderWithID()
	return NodeStatus{Name: n.cfg.NodeName, Addr: string(n.trans.LocalAddr()), Running: true, State: n.raft.State().String(),
		Leader: string(leader), Term: n.raft.CurrentTerm(), LastIndex: n.raft.LastIndex(),
		CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.raft.AppliedIndex()}
}

// Status reports every node of the cluster's configuration: this one
// directly, the others by asking them (a node that does not answer within
// timeout is reported not running).
func (n *Node) Status(timeout time.Duration) []NodeStatus {
	var servers []raft.Server
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		servers = f.Configuration().Servers
	}
	out := make([]NodeStatus, len(servers))
	var wg sync.WaitGroup
	self := false
	for i, s := range servers {
		out[i] = NodeStatus{Name: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter}
		if s.ID == raft.ServerID(n.cfg.NodeName) {
			st := n.localStatus()
			st.Voter = out[i].Voter
			out[i] = st
			self = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := n.mux.call(string(s.Address), request{Op: opStatus}, timeout)
			if err == nil && resp.Status != nil {
				st := *resp.Status
				st.Addr, st.Voter = out[i].Addr, out[i].Voter
				out[i] = st
			}
		}()
	}
	wg.Wait()
	if !self { // not (yet, or any more) in the configuration
		out = append(out, n.localStatus())
	}
	var commit uint64
	for _, s := range out {
		commit = max(commit, s.CommitIndex)
	}
	for i := range out {
		if out[i].Running && commit > out[i].AppliedIndex {
			out[i].Lag = commit - out[i].AppliedIndex
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
