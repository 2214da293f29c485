package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/definitions"
	"github.com/heraldmq/herald/internal/vfs"
)

// definitionsFileName holds the durable topology in RabbitMQ's definitions
// format, rewritten atomically after every durable change.
const definitionsFileName = "definitions.json"

type definitionsFile struct {
	path   string
	log    *slog.Logger
	broker *broker.Broker
	users  *auth.Users // nil: users are not saved

	mu      sync.Mutex // serialises saves
	loading bool
}

// load restores the definitions saved by an earlier run.
func (d *definitionsFile) load() error {
	data, err := os.ReadFile(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", d.path, err)
	}
	doc, err := definitions.Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w (move it away to start empty)", d.path, err)
	}
	start := time.Now()
	d.mu.Lock()
	d.loading = true
	d.mu.Unlock()
	// The saved users replace the defaults: a deleted guest stays deleted,
	// as RabbitMQ creates its default user on first boot only.
	err = definitions.Import(d.broker, d.users, doc, true)
	if defaultVHostDeleted(doc) {
		// The broker starts with "/"; a saved vhosts list without "/"
		// means it was deleted, and it stays deleted, as
		// RabbitMQ creates its default vhost on first boot only.
		if _, derr := d.broker.DeleteVHost(broker.DefaultVHost); derr != nil {
			err = errors.Join(err, derr)
		}
	}
	d.mu.Lock()
	d.loading = false
	d.mu.Unlock()
	if err != nil {
		d.log.Warn("some saved definitions could not be restored", "file", d.path, "err", err)
	}
	d.log.Info("definitions restored", "file", d.path, "vhosts", len(doc.VHosts), "exchanges", len(doc.Exchanges),
		"queues", len(doc.Queues), "bindings", len(doc.Bindings), "policies", len(doc.Policies), "users", usersCount(doc.Users), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// defaultVHostDeleted reports whether a saved document has a vhosts list
// (Herald always writes one, "[]" once every vhost is deleted) without
// the default vhost.
func defaultVHostDeleted(doc definitions.Document) bool {
	if doc.VHosts == nil {
		return false
	}
	for _, v := range doc.VHosts {
		if v.Name == broker.DefaultVHost {
			return false
		}
	}
	return true
}

// changed is the broker's OnDefinitionsChange hook: it writes the durable
// definitions before the declaring client gets its answer.
func (d *definitionsFile) changed() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loading {
		return // restoring what is already on disk
	}
	data, err := json.MarshalIndent(definitions.Export(d.broker, d.users, true), "", "  ")
	if err == nil {
		err = vfs.WriteFileAtomic(d.path, data)
	}
	if err != nil {
		d.log.Error("cannot save durable definitions; they will not survive a restart", "file", d.path, "err", err)
	}
}

// loadExtra imports a RabbitMQ definitions file given with
// --load-definitions (RabbitMQ's load_definitions), merged into what was
// restored; the result is saved like any change.
func (d *definitionsFile) loadExtra(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read definitions file: %w", err)
	}
	doc, err := definitions.Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := definitions.Import(d.broker, d.users, doc, false); err != nil {
		return fmt.Errorf("importing %s: %w", path, err)
	}
	d.log.Info("definitions loaded", "file", path, "vhosts", len(doc.VHosts), "exchanges", len(doc.Exchanges),
		"queues", len(doc.Queues), "bindings", len(doc.Bindings), "policies", len(doc.Policies), "users", usersCount(doc.Users))
	d.changed()
	return nil
}

func usersCount(u *[]auth.UserDef) int {
	if u == nil {
		return 0
	}
	return len(*u)
}
