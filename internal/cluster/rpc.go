package cluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// The node-to-node protocol beside Raft: one JSON request and one JSON
// response per connection (changes to definitions are rare; a connection
// each keeps it simple and stateless).

const (
	opHello  = "hello"  // who are you, do you have Raft state
	opApply  = "apply"  // append this entry (to the leader)
	opJoin   = "join"   // add me as a voter (to the leader)
	opRemove = "remove" // remove that node (to the leader)
	opStatus = "status" // your Raft state
)

type request struct {
	Op    string `json:"op"`
	Entry []byte `json:"entry,omitempty"`
	Name  string `json:"name,omitempty"`
	Addr  string `json:"addr,omitempty"`
}

type response struct {
	Name string `json:"name,omitempty"`
	// Addr, HasState, LastIndex and Servers answer hello: the node's
	// advertised address, whether it has Raft state, its last log index
	// and its configuration (sorted by ID).
	Addr      string        `json:"addr,omitempty"`
	HasState  bool          `json:"has_state,omitempty"`
	LastIndex uint64        `json:"last_index,omitempty"`
	Servers   []raft.Server `json:"servers,omitempty"`
	NotLeader bool          `json:"not_leader,omitempty"`
	Err       string        `json:"err,omitempty"`
	Status    *NodeStatus   `json:"status,omitempty"`
}

const rpcTimeout = 10 * time.Second

// maxRequest bounds a request's or response's size: an entry is one
// command or the users section, far below it.
const maxRequest = 8 << 20

// call sends one request to addr and returns the response.
func (m *mux) call(addr string, req request, timeout time.Duration) (response, error) {
	c, err := m.dial(addr, timeout, kindRPC)
	if err != nil {
		return response{}, err
	}
	return exchange(c, addr, req, timeout)
}

// exchange sends req on c, reads the response and closes c.
func exchange(c net.Conn, addr string, req request, timeout time.Duration) (response, error) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return response{}, err
	}
	var resp response
	if err := json.NewDecoder(bufio.NewReader(&limitedConn{c: c, left: maxRequest})).Decode(&resp); err != nil {
		return response{}, fmt.Errorf("no answer from %s: %w", addr, err)
	}
	return resp, nil
}

// serveRPC answers one request on c.
func (n *Node) serveRPC(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(rpcTimeout + 5*time.Second))
	var req request
	lc := &limitedConn{c: c, left: maxRequest}
	br := bufio.NewReader(lc)
	d := json.NewDecoder(br)
	if err := d.Decode(&req); err != nil {
		return
	}
	if req.Op == opQStream {
		lc.left = 1 << 62 // frames, each checked against maxRequest
		_ = c.SetDeadline(time.Time{})
		n.serveQStream(c, io.MultiReader(d.Buffered(), br))
		return
	}
	resp := n.handle(req)
	_ = json.NewEncoder(c).Encode(resp)
}

func (n *Node) handle(req request) response {
	resp := response{Name: n.cfg.NodeName}
	switch req.Op {
	case opHello:
		resp.Addr, resp.HasState, resp.LastIndex = string(n.trans.LocalAddr()), n.hasState.Load(), n.raft.LastIndex()
		if f := n.raft.GetConfiguration(); f.Error() == nil {
			c := f.Configuration()
			resp.Servers = c.Clone().Servers
			sort.Slice(resp.Servers, func(i, j int) bool { return resp.Servers[i].ID < resp.Servers[j].ID })
		}
	case opStatus:
		st := n.localStatus()
		resp.Status = &st
	case opApply:
		resp.setErr(n.raft.Apply(req.Entry, rpcTimeout).Error())
	case opJoin:
		if req.Name == "" || req.Addr == "" {
			resp.Err = "join needs a name and an address"
			break
		}
		resp.setErr(n.addVoter(req.Name, req.Addr))
	case opRemove:
		resp.setErr(n.raft.RemoveServer(raft.ServerID(req.Name), 0, rpcTimeout).Error())
	default:
		resp.Err = "unknown request " + req.Op
	}
	return resp
}

func (r *response) setErr(err error) {
	if err == nil {
		return
	}
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		r.NotLeader = true
	}
	r.Err = err.Error()
}

// limitedConn reads at most left bytes, then reports the end.
type limitedConn struct {
	c    net.Conn
	left int64
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errors.New("request too large")
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.c.Read(p)
	l.left -= int64(n)
	return n, err
}
