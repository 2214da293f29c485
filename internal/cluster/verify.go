package cluster

import (
	"errors"
	"fmt"
	"os"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// verifyLog checks the Raft log at path before Raft opens it: the bolt
// file's own structure (bolt keeps no checksums of its data) and the
// CRC-32C every Herald entry carries. A damaged log stops the node with a
// message saying how to recover, so it never applies or serves what a
// flipped bit made of a definition.
func verifyLog(path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	hint := fmt.Sprintf("move %s away (or the whole raft directory) and start the node again: it rejoins and copies the state from the other nodes", path)
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("the Raft log %s cannot be opened: %w; %s", path, err, hint)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		for cerr := range tx.Check() {
			return fmt.Errorf("bolt structure: %w", cerr)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("the Raft log %s is damaged: %w; %s", path, err, hint)
	}
	db.Close()
	store, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{ReadOnly: true}})
	if err != nil {
		return fmt.Errorf("the Raft log %s cannot be opened: %w; %s", path, err, hint)
	}
	defer store.Close()
	first, err := store.FirstIndex()
	if err != nil {
		return fmt.Errorf("the Raft log %s is damaged: %w; %s", path, err, hint)
	}
	last, err := store.LastIndex()
	if err != nil {
		return fmt.Errorf("the Raft log %s is damaged: %w; %s", path, err, hint)
	}
	for i := first; i <= last && i > 0; i++ {
		var l raft.Log
		if err := store.GetLog(i, &l); err != nil {
			return fmt.Errorf("the Raft log %s is damaged at index %d: %w; %s", path, i, err, hint)
		}
		if l.Index != i {
			return fmt.Errorf("the Raft log %s is damaged at index %d (the entry says %d); %s", path, i, l.Index, hint)
		}
		if l.Type == raft.LogCommand {
			if _, err := decodeEntry(l.Data); err != nil {
				return fmt.Errorf("the Raft log %s is damaged at index %d: %w; %s", path, i, err, hint)
			}
		}
	}
	return nil
}
