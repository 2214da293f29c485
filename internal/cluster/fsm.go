package cluster

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/definitions"
	"github.com/heraldmq/herald/internal/vfs"
)

// entry is one Raft log entry's data: a broker command (broker.
// EncodeCommand's bytes) or the users and permissions as a whole. Origin
// and Req let the proposing node hand the result to its waiting caller.
type entry struct {
	Origin  string            `json:"origin"`
	Req     uint64            `json:"req"`
	Command json.RawMessage   `json:"command,omitempty"`
	Users   *auth.Definitions `json:"users,omitempty"`
	// Quorum are ops on replicated quorum queues (quorum.go), applied on
	// every node in order.
	Quorum []broker.QuorumOp `json:"quorum,omitempty"`
	// Boot is the proposing node's incarnation and QSeqs the ops'
	// numbers there: an op at or below the last applied from (Origin,
	// Boot) was applied already (a batch sent again).
	Boot  uint64   `json:"boot,omitempty"`
	QSeqs []uint64 `json:"qseqs,omitempty"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeEntry frames e as a CRC-32C of the body, then the body: a bit
// flipped in the log on disk is found (verifyLog) instead of applied. The
// body is JSON, or, for quorum queue ops (the hot path), binary: 'Q',
// origin (uvarint length, bytes), boot (uvarint), the op count (uvarint),
// then each op's number (uvarint) and broker.AppendQuorumOp's form.
func encodeEntry(e entry) ([]byte, error) {
	out := make([]byte, 4, 64)
	if len(e.Quorum) > 0 {
		if len(e.QSeqs) != len(e.Quorum) || e.Req != 0 || e.Command != nil || e.Users != nil {
			return nil, errors.New("a quorum entry carries ops and their numbers only")
		}
		out = append(out, quorumTag)
		out = binary.AppendUvarint(out, uint64(len(e.Origin)))
		out = append(out, e.Origin...)
		out = binary.AppendUvarint(out, e.Boot)
		out = binary.AppendUvarint(out, uint64(len(e.Quorum)))
		for i, op := range e.Quorum {
			out = binary.AppendUvarint(out, e.QSeqs[i])
			out = broker.AppendQuorumOp(out, op)
		}
	} else {
		body, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		out = append(out, body...)
	}
	binary.BigEndian.PutUint32(out, crc32.Checksum(out[4:], castagnoli))
	return out, nil
}

// quorumTag starts a binary quorum entry's body (a JSON one starts '{').
const quorumTag = 'Q'

func decodeQuorumEntry(b []byte) (entry, error) {
	var e entry
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	l := uv()
	if l > uint64(len(b)) {
		return e, errCorrupt
	}
	e.Origin, b = string(b[:l]), b[l:]
	e.Boot = uv()
	count := uv()
	if b == nil || count == 0 || count > uint64(len(b)) {
		return e, fmt.Errorf("%w: quorum entry header", errCorrupt)
	}
	e.Quorum, e.QSeqs = make([]broker.QuorumOp, 0, count), make([]uint64, 0, count)
	for range count {
		seq := uv()
		if b == nil {
			return e, fmt.Errorf("%w: quorum op number", errCorrupt)
		}
		op, rest, err := broker.ReadQuorumOp(b)
		if err != nil {
			return e, fmt.Errorf("%w: %w", errCorrupt, err)
		}
		op.Meta, op.Body = bytes.Clone(op.Meta), bytes.Clone(op.Body) // kept in memory: not the entry's buffer
		e.Quorum, e.QSeqs, b = append(e.Quorum, op), append(e.QSeqs, seq), rest
	}
	if len(b) != 0 {
		return e, fmt.Errorf("%w: trailing bytes", errCorrupt)
	}
	return e, nil
}

var errCorrupt = errors.New("checksum mismatch")

func decodeEntry(data []byte) (entry, error) {
	if len(data) < 4 {
		return entry{}, fmt.Errorf("%w: %d bytes", errCorrupt, len(data))
	}
	if crc32.Checksum(data[4:], castagnoli) != binary.BigEndian.Uint32(data) {
		return entry{}, errCorrupt
	}
	if len(data) > 4 && data[4] == quorumTag {
		return decodeQuorumEntry(data[5:])
	}
	var e entry
	if err := json.Unmarshal(data[4:], &e); err != nil {
		return entry{}, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	if e.Quorum != nil || e.QSeqs != nil {
		return entry{}, fmt.Errorf("%w: quorum ops in a JSON entry", errCorrupt)
	}
	return e, nil
}

// fsm applies the log to the broker and the users. It remembers the last
// index it applied in <dir>/applied, after the broker has saved the change
// (broker.Apply persists durable definitions before it returns): the
// node's own data dir is its state, and entries it already holds are not
// applied a second time when Raft replays them after a restart (a replayed
// purge or delete would drop messages recovered from the message log).
type fsm struct {
	n         *Node
	path      string
	skipUntil uint64 // entries at or below it are already in the local state
	last      atomic.Uint64
	// applyingUsers is set while a users entry is imported, so that the
	// users' change hook does not propose it again.
	applyingUsers atomic.Bool
	mu            sync.Mutex
	lastUsers     []byte // the users section last applied or proposed, JSON
	// qseqs is, per proposing incarnation ("node/boot"), what quorum ops
	// were applied (quorum.go); only the FSM's goroutine uses it.
	qseqs map[string]*qseqState
}

// qseqState is the ops applied from one incarnation: every number up to
// Last but the Gaps (numbers skipped by a later op: their batch failed
// and a later one committed). An op at or below Last is not applied: a
// copy of an applied one, or one in a gap, which the proposer is told of
// (it must not apply after the later ones: a publisher's order).
type qseqState struct {
	Last uint64   `json:"last"`
	Gaps []uint64 `json:"gaps,omitempty"`
}

// maxGaps bounds the gaps remembered per incarnation (the oldest go).
const maxGaps = 1 << 16

// quorumOutcome is what the FSM returns for a quorum entry (the raft
// future's Response on the leader): the indexes of the ops not applied
// because they fell in a gap.
type quorumOutcome struct{ gapped []int }

// admit reports whether the op numbered seq from st applies, and whether
// it is refused for falling in a gap.
func (st *qseqState) admit(seq uint64) (apply, gapped bool) {
	if seq > st.Last {
		for g := st.Last + 1; g < seq && len(st.Gaps) < maxGaps; g++ {
			st.Gaps = append(st.Gaps, g)
		}
		if len(st.Gaps) > maxGaps/2 && seq-st.Last > maxGaps {
			st.Gaps = nil // a huge jump: nothing of it will come again
		}
		st.Last = seq
		return true, false
	}
	if _, found := slices.BinarySearch(st.Gaps, seq); found {
		return false, true
	}
	return false, false
}

func newFSM(n *Node, dir string) (*fsm, error) {
	f := &fsm{n: n, path: filepath.Join(dir, "applied")}
	b, err := os.ReadFile(f.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("cannot read %s: %w", f.path, err)
	default:
		v, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if perr != nil {
			return nil, fmt.Errorf("%s is damaged (%q): remove the raft directory to rejoin from the other nodes", f.path, b)
		}
		f.skipUntil = v
		f.last.Store(v)
	}
	return f, nil
}

func (f *fsm) close() {}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	e, err := decodeEntry(l.Data)
	if err != nil {
		// The leader's copy, checked on its disk at start and carried
		// over TCP: a mismatch here is a bug or memory damage. Applying a
		// guess would make this node differ from the others for good.
		f.n.log.Error("a Raft log entry does not match its checksum; stopping this node's state machine", "index", l.Index, "err", err)
		panic(fmt.Sprintf("herald cluster: Raft log entry %d is corrupt: %v", l.Index, err))
	}
	if len(e.Quorum) > 0 {
		// Quorum queue state is in memory only: rebuilt on every start
		// from the last snapshot and the log after it, so these entries
		// apply whatever skipUntil says, and need no applied file.
		key := e.Origin + "/" + strconv.FormatUint(e.Boot, 10)
		if f.qseqs == nil {
			f.qseqs = map[string]*qseqState{}
		}
		st := f.qseqs[key]
		if st == nil {
			st = &qseqState{}
			f.qseqs[key] = st
		}
		var out quorumOutcome
		for i, op := range e.Quorum {
			apply, gapped := st.admit(e.QSeqs[i])
			if gapped {
				out.gapped = append(out.gapped, i)
			}
			if apply {
				f.n.cfg.Broker.ApplyQuorum(op, e.Origin, e.Boot)
			}
		}
		f.last.Store(max(f.last.Load(), l.Index))
		return out
	}
	if l.Index <= f.skipUntil {
		f.replaySkipped(e)
		return nil
	}
	var a applied
	switch {
	case e.Command != nil:
		c, derr := broker.DecodeCommand(e.Command)
		if derr != nil {
			a.err = derr
			break
		}
		a.res, a.err = f.n.cfg.Broker.Apply(c)
	case e.Users != nil:
		a.err = f.applyUsers(*e.Users)
	}
	f.setApplied(l.Index)
	if e.Origin == f.n.cfg.NodeName {
		f.n.deliver(e.Req, a)
	}
	return nil
}

// replaySkipped gives the quorum queues' in-memory state what it needs of
// a definitions entry the node's own state already holds: a purge.
func (f *fsm) replaySkipped(e entry) {
	if e.Command == nil {
		return
	}
	c, err := broker.DecodeCommand(e.Command)
	if err != nil {
		return
	}
	if pc, ok := c.(broker.PurgeQueue); ok {
		if v := f.n.cfg.Broker.VHost(pc.VHost); v != nil {
			if q, err := v.Queue(pc.Name); err == nil && q.Replicated() {
				_, _ = f.n.cfg.Broker.Apply(pc)
			}
		}
	}
}

func (f *fsm) applyUsers(d auth.Definitions) error {
	f.rememberUsers(d)
	f.applyingUsers.Store(true)
	defer f.applyingUsers.Store(false)
	return f.n.cfg.Users.ImportDefinitions(d, true)
}

func (f *fsm) rememberUsers(d auth.Definitions) {
	b, _ := json.Marshal(d)
	f.mu.Lock()
	f.lastUsers = b
	f.mu.Unlock()
}

// sameUsers reports whether d is what was last applied or proposed, and
// remembers it as proposed when not.
func (f *fsm) sameUsers(d auth.Definitions) bool {
	b, _ := json.Marshal(d)
	f.mu.Lock()
	defer f.mu.Unlock()
	if bytes.Equal(b, f.lastUsers) {
		return true
	}
	f.lastUsers = b
	return false
}

// setApplied records index as applied, durably: a crash before the write
// replays that one entry, which declarations tolerate.
func (f *fsm) setApplied(index uint64) {
	f.last.Store(index)
	if err := vfs.WriteFileAtomic(f.path, []byte(strconv.FormatUint(index, 10)+"\n")); err != nil {
		f.n.log.Error("cannot record the applied Raft index", "file", f.path, "err", err)
	}
}

// snapshotDoc is an FSM snapshot: the definitions document (broker
// topology, users, permissions) at index Index.
type snapshotDoc struct {
	Index       uint64               `json:"index"`
	Definitions definitions.Document `json:"definitions"`
	// Quorum is the replicated quorum queues' state (their messages
	// included) at Index.
	Quorum     broker.QuorumSnapshot `json:"quorum"`
	QuorumSeqs map[string]*qseqState `json:"quorum_seqs,omitempty"`
}

func cloneSeqs(m map[string]*qseqState) map[string]*qseqState {
	out := make(map[string]*qseqState, len(m))
	for k, v := range m {
		out[k] = &qseqState{Last: v.Last, Gaps: slices.Clone(v.Gaps)}
	}
	return out
}

// Snapshot implements raft.FSM. It runs on the FSM's goroutine, so the
// document is taken at exactly the last applied index.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	doc := definitions.Export(f.n.cfg.Broker, f.n.cfg.Users, false)
	doc.Queues = replicatedQueues(f.n.cfg.Broker, doc.Queues)
	data, err := json.Marshal(snapshotDoc{Index: f.last.Load(), Definitions: doc, Quorum: f.n.cfg.Broker.SnapshotQuorum(),
		QuorumSeqs: cloneSeqs(f.qseqs)})
	if err != nil {
		return nil, err
	}
	return snapshot(data), nil
}

// replicatedQueues leaves out the node-local queues (exclusive or
// auto-delete: see localQueue).
func replicatedQueues(b *broker.Broker, qs []broker.QueueDef) []broker.QueueDef {
	out := qs[:0]
	for _, q := range qs {
		if v := b.VHost(q.VHost); v != nil {
			if h, err := v.Queue(q.Name); err == nil && localQueue(h) {
				continue
			}
		}
		out = append(out, q)
	}
	return out
}

// localQueue: an exclusive queue belongs to one connection and an
// auto-delete one goes with its consumers on one node; the broker applies
// commands about them without replicating them.
func localQueue(q *broker.Queue) bool { return q.Exclusive() || q.AutoDelete() }

// Restore implements raft.FSM: the leader sent a snapshot because this
// node is too far behind for the log. The node's definitions become the
// document's: what it lacks is created, what it has beyond it is deleted.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var s snapshotDoc
	if err := json.NewDecoder(rc).Decode(&s); err != nil {
		return fmt.Errorf("reading a snapshot: %w", err)
	}
	if err := syncTo(f.n.cfg.Broker, s.Definitions); err != nil {
		f.n.log.Warn("some definitions of the snapshot could not be applied", "err", err)
	}
	if s.Definitions.Users != nil {
		d := auth.Definitions{Users: *s.Definitions.Users}
		if s.Definitions.Permissions != nil {
			d.Permissions = *s.Definitions.Permissions
		}
		if err := f.applyUsers(d); err != nil {
			f.n.log.Warn("some users of the snapshot could not be applied", "err", err)
		}
	}
	f.n.cfg.Broker.RestoreQuorum(s.Quorum)
	f.qseqs = s.QuorumSeqs
	f.skipUntil = 0
	f.setApplied(s.Index)
	f.n.log.Info("definitions restored from a snapshot", "index", s.Index)
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
