package admin

import (
	"net/http"
)

// Cluster is what the management API needs of cluster mode (the app
// passes it in with SetCluster): the nodes of the Raft group with their
// state, and removing one. Without it Herald is a single node.
type Cluster interface {
	// Name is this node's --node-name.
	Name() string
	Nodes() []ClusterNode
	RemoveNode(name string) error
}

// ClusterNode is one member as /api/nodes reports it.
type ClusterNode struct {
	Name         string
	Addr         string
	Running      bool
	State        string // Leader, Follower, Candidate
	Leader       string
	Term         uint64
	LastIndex    uint64
	CommitIndex  uint64
	AppliedIndex uint64
	Lag          uint64
	Voter        bool
}

// clusterNodeJSON is a node of /api/nodes in cluster mode: RabbitMQ's
// fields (this node's resources; the others' name and running) and the
// Raft state.
type clusterNodeJSON struct {
	nodeJSON
	ClusterAddr string `json:"cluster_addr"`
	RaftState   string `json:"raft_state"`
	RaftLeader  string `json:"raft_leader"`
	RaftTerm    uint64 `json:"raft_term"`
	RaftLast    uint64 `json:"raft_last_index"`
	RaftCommit  uint64 `json:"raft_commit_index"`
	RaftApplied uint64 `json:"raft_applied_index"`
	RaftLag     uint64 `json:"raft_lag"`
	RaftVoter   bool   `json:"raft_voter"`
	ThisNode    bool   `json:"this_node"`
}

// SetCluster puts the server in cluster mode: /api/nodes lists every node
// and the node name everywhere is the cluster's.
func (s *Server) SetCluster(c Cluster) {
	s.cluster = c
	s.node = c.Name()
	admin := s.shell.Administrator
	admin("DELETE /api/nodes/{node}", s.removeNode)
}

func (s *Server) clusterNodes() []clusterNodeJSON {
	nodes := s.cluster.Nodes()
	out := make([]clusterNodeJSON, 0, len(nodes))
	for _, n := range nodes {
		j := clusterNodeJSON{ClusterAddr: n.Addr, RaftState: n.State, RaftLeader: n.Leader, RaftTerm: n.Term,
			RaftLast: n.LastIndex, RaftCommit: n.CommitIndex, RaftApplied: n.AppliedIndex, RaftLag: n.Lag, RaftVoter: n.Voter}
		if n.Name == s.node {
			j.nodeJSON = s.nodeJSON()
			j.ThisNode = true
		} else {
			j.nodeJSON = nodeJSON{Name: n.Name, Type: "disc", Running: n.Running, RatesMode: "basic"}
		}
		out = append(out, j)
	}
	return out
}

func (s *Server) listClusterNodes(w http.ResponseWriter, r *http.Request) {
	writeList(w, r, s.clusterNodes(), "name")
}

func (s *Server) showClusterNode(w http.ResponseWriter, r *http.Request) {
	for _, n := range s.clusterNodes() {
		if n.Name == r.PathValue("node") {
			writeJSON(w, http.StatusOK, n)
			return
		}
	}
	writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
}

// removeNode is DELETE /api/nodes/{node} (herald ctl cluster
// remove-node): the node leaves the Raft configuration.
func (s *Server) removeNode(w http.ResponseWriter, r *http.Request) {
	if err := s.cluster.RemoveNode(r.PathValue("node")); err != nil {
		writeBrokerError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
