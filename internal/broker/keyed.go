package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/heraldmq/herald/internal/store"
)

// Keyed stores: per virtual host, durable maps from a key to one message.
// Each vhost has two, both created on first use:
//
//   - Retained: retained messages (MQTT's RETAIN flag), keyed by topic. The
//     core keeps them so that they are per vhost and survive a restart;
//     which keys match a subscription is the adapter's business.
//   - SessionState: protocol adapters' durable session state (MQTT
//     persistent sessions: subscription options, session expiry), keyed by
//     the adapter ("mqtt/<client id>"); the message body is the adapter's
//     own encoding.
//
// With a message log (Options.Store), a store is persisted like a durable
// queue that is never consumed: each entry is a Message record (its key
// travels in the record's metadata) plus an Enqueue record under the
// store's own log queue id, appended together with the Ack of the entry it
// replaces, so that after a crash exactly one of the old and the new value
// comes back. A message in a store is durable whatever its delivery mode
// (MQTT requires a retained QoS 0 message to be kept). RecoverMessages
// reloads the stores; the store is not a queue, so nothing about it shows
// in queue listings or can be consumed. Each message is held in RAM once,
// by the store (the same *Message that was published to the queues).
// Without a log the stores live in memory only.
type KeyedStore struct {
	b     *Broker
	vhost *VHost
	log   Storage // nil: memory only
	qid   uint64  // the store's queue id in the log

	mu    sync.Mutex // guards below; a leaf (the log's lock is taken under it)
	items map[string]keyedItem
	seq   uint64 // orders the store's Enqueue records in the log
}

type keyedItem struct {
	msg     *Message
	storeID uint64 // the entry's message in the log; 0 = not stored
}

// Keyed store names: each is a log queue id per vhost, so the set is fixed.
const (
	keyedRetained = "retained"
	keyedSessions = "sessions"
)

var keyedNames = []string{keyedRetained, keyedSessions}

// keyedStores holds every vhost's keyed stores, by vhost name then store
// name (the VHost struct stays as it is).
type keyedStores struct {
	mu     sync.Mutex
	byHost map[string]map[string]*KeyedStore
}

// Retained is the vhost's store of retained messages, keyed by topic.
func (v *VHost) Retained() *KeyedStore { return v.broker.keyedStore(v, keyedRetained) }

// SessionState is the vhost's store of protocol adapters' durable session
// state, keyed by the adapter.
func (v *VHost) SessionState() *KeyedStore { return v.broker.keyedStore(v, keyedSessions) }

func keyedQueueID(vhost, name string) uint64 { return queueID(vhost, "\x00keyed:"+name) }

// keyedStore returns v's store called name, creating it (and the other
// stores of v) on first use. A vhost deleted and created again under the
// same name starts with empty stores: the old ones are dropped, from the
// log too.
func (b *Broker) keyedStore(v *VHost, name string) *KeyedStore {
	k := &b.keyed
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.byHost == nil {
		k.byHost = make(map[string]map[string]*KeyedStore)
	}
	stores := k.byHost[v.name]
	if stores != nil && stores[name].vhost != v {
		if b.VHost(v.name) != v {
			// v itself was deleted (a connection that has not noticed
			// yet): a throwaway store, so that the live vhost of the same
			// name is not touched.
			return newKeyedStore(b, v, name, nil)
		}
		// v replaced a deleted vhost of the same name.
		for _, s := range stores {
			s.drop()
		}
		stores = nil
	}
	if stores == nil {
		stores = make(map[string]*KeyedStore, len(keyedNames))
		for _, n := range keyedNames {
			stores[n] = newKeyedStore(b, v, n, b.store)
		}
		k.byHost[v.name] = stores
	}
	return stores[name]
}

func newKeyedStore(b *Broker, v *VHost, name string, log Storage) *KeyedStore {
	return &KeyedStore{b: b, vhost: v, log: log, qid: keyedQueueID(v.name, name), items: make(map[string]keyedItem)}
}

// dropKeyedStores forgets the stores of a deleted vhost, in the log too.
// (Without it they are dropped when a vhost of the same name is created,
// or by the next start's recovery, which finds no vhost for them.)
func (b *Broker) dropKeyedStores(vhost string) {
	k := &b.keyed
	k.mu.Lock()
	stores := k.byHost[vhost]
	delete(k.byHost, vhost)
	k.mu.Unlock()
	for _, s := range stores {
		s.drop()
	}
}

// drop forgets every entry, in the log too (the vhost is gone).
func (s *KeyedStore) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.items)
	if s.log != nil {
		s.log.AppendFunc([]store.Record{{Kind: store.KindQueueDelete, QueueID: s.qid}}, noop)
	}
}

// Set makes m the message of key, replacing any previous one. m must not
// be modified afterwards (it may be the message just published: it is
// shared, not copied). The write is durable once Sync says so.
func (s *KeyedStore) Set(key string, m *Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.items[key]
	it := keyedItem{msg: m}
	if st := s.log; st != nil {
		it.storeID = s.b.nextMsgID.Add(1)
		s.seq++
		recs := make([]store.Record, 0, 3)
		recs = append(recs,
			store.Record{Kind: store.KindMessage, MessageID: it.storeID, Meta: encodeKeyedMeta(key, m), Body: m.Body},
			store.Record{Kind: store.KindEnqueue, QueueID: s.qid, MessageID: it.storeID, Seq: s.seq})
		if had && old.storeID != 0 {
			recs = append(recs, store.Record{Kind: store.KindAck, QueueID: s.qid, MessageID: old.storeID})
		}
		st.AppendFunc(recs, noop) // one atomic unit: old or new after a crash
	}
	s.items[key] = it
}

// Delete removes key's message, if any.
func (s *KeyedStore) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteLocked(key)
}

// CompareAndDelete removes key's message if it is still m (an adapter
// dropping an expired message must not drop its replacement).
func (s *KeyedStore) CompareAndDelete(key string, m *Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it, ok := s.items[key]; !ok || it.msg != m {
		return false
	}
	s.deleteLocked(key)
	return true
}

func (s *KeyedStore) deleteLocked(key string) {
	it, ok := s.items[key]
	if !ok {
		return
	}
	delete(s.items, key)
	if it.storeID != 0 && s.log != nil {
		s.log.AppendFunc([]store.Record{{Kind: store.KindAck, QueueID: s.qid, MessageID: it.storeID}}, noop)
	}
}

// Get returns key's message, or nil.
func (s *KeyedStore) Get(key string) *Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.items[key].msg
}

// Len is the number of keys.
func (s *KeyedStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// KeyedMessage is one entry of a KeyedStore.
type KeyedMessage struct {
	Key     string
	Message *Message
}

// Select returns the entries whose key match accepts, sorted by key. match
// runs under the store's lock: it must not call back into the store.
func (s *KeyedStore) Select(match func(key string) bool) []KeyedMessage {
	s.mu.Lock()
	var out []KeyedMessage
	for k, it := range s.items {
		if match(k) {
			out = append(out, KeyedMessage{Key: k, Message: it.msg})
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Sync waits until every change made so far (to any store, and every
// message published before) is on disk, or done is closed. Without a log
// it returns at once.
func (s *KeyedStore) Sync(done <-chan struct{}) error {
	if s.log == nil {
		return nil
	}
	select {
	case err := <-barrier(s.log):
		return err
	case <-done:
		return errors.New("cancelled while waiting for the message log")
	}
}

// restore loads recovered entries (in Seq order) into the store; a later
// entry for a key replaces an earlier one, which is acknowledged.
func (s *KeyedStore) restore(entries []store.Entry) (n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var stale []store.Record
	for _, e := range entries {
		s.seq = max(s.seq, e.Seq)
		meta, body, err := s.log.ReadMessage(e.MessageID)
		var key string
		m := &Message{Body: body}
		if err == nil {
			key, err = decodeKeyedMeta(meta, m)
		}
		if err != nil {
			s.b.log.Warn("stored keyed message unreadable; dropped", "vhost", s.vhost.name, "message_id", e.MessageID, "err", err)
			stale = append(stale, store.Record{Kind: store.KindAck, QueueID: s.qid, MessageID: e.MessageID})
			continue
		}
		if old, ok := s.items[key]; ok {
			stale = append(stale, store.Record{Kind: store.KindAck, QueueID: s.qid, MessageID: old.storeID})
		} else {
			n++
		}
		s.items[key] = keyedItem{msg: m, storeID: e.MessageID}
	}
	if len(stale) > 0 {
		s.log.AppendFunc(stale, noop)
	}
	return n
}

// recoverableKeyedStores maps the log queue ids of every vhost's stores to
// the stores (created for the purpose), for RecoverMessages.
func (b *Broker) recoverableKeyedStores() map[uint64]*KeyedStore {
	out := make(map[uint64]*KeyedStore)
	for _, v := range b.VHosts() {
		for _, n := range keyedNames {
			s := b.keyedStore(v, n)
			out[s.qid] = s
		}
	}
	return out
}

// A keyed store's Message record carries its key before the message's
// usual metadata: keyedMetaVersion(1) key(str) meta.
const keyedMetaVersion = 0x81

func encodeKeyedMeta(key string, m *Message) []byte {
	b := appendStr([]byte{keyedMetaVersion}, key)
	return append(b, encodeMeta(m)...)
}

func decodeKeyedMeta(b []byte, m *Message) (string, error) {
	if len(b) == 0 || b[0] != keyedMetaVersion {
		return "", fmt.Errorf("%w: not a keyed store entry", errBadMeta)
	}
	b = b[1:]
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return "", errBadMeta
	}
	key := string(b[w : w+int(n)])
	return key, decodeMeta(b[w+int(n):], m)
}
