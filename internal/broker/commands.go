package broker

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// State changes as values. Every change to what the broker defines
// (vhosts, exchanges, queues, bindings, policies) is a Command: plain data,
// with everything decided that a replay must not decide again (a generated
// queue name is in the command, not made up while applying it). Apply is
// the one function that performs them; the exported methods (DeclareQueue,
// BindQueue, PutPolicy, ...) build a command and apply it. A replicated log
// carries EncodeCommand's bytes and applies DecodeCommand's value on every
// node.
//
// Publishing and settling are not commands: they are the hot path, and a
// value per message would cost an allocation there. A replicated queue kind
// turns them into its own log entries behind the queueKind seam.

// Command is one state change; its Type names it in the encoding.
type Command interface {
	Type() string
}

// Command types, as written in the encoding; frozen.
const (
	cmdCreateVHost     = "vhost.create"
	cmdDeleteVHost     = "vhost.delete"
	cmdDeclareExchange = "exchange.declare"
	cmdDeleteExchange  = "exchange.delete"
	cmdDeclareQueue    = "queue.declare"
	cmdDeleteQueue     = "queue.delete"
	cmdPurgeQueue      = "queue.purge"
	cmdBind            = "binding.create"
	cmdUnbind          = "binding.delete"
	cmdPutPolicy       = "policy.put"
	cmdDeletePolicy    = "policy.delete"
)

// CreateVHost creates a virtual host if it does not exist.
type CreateVHost struct {
	VHost string `json:"vhost"`
}

// DeleteVHost deletes a virtual host and everything in it (DeleteVHost).
type DeleteVHost struct {
	VHost string `json:"vhost"`
}

// DeclareExchange creates an exchange or checks that it is equivalent.
type DeclareExchange struct {
	VHost      string     `json:"vhost"`
	Name       string     `json:"name"`
	Kind       string     `json:"kind"`
	Durable    bool       `json:"durable,omitempty"`
	AutoDelete bool       `json:"auto_delete,omitempty"`
	Internal   bool       `json:"internal,omitempty"`
	Args       tableValue `json:"args"`
}

// DeleteExchange removes an exchange and its bindings.
type DeleteExchange struct {
	VHost    string `json:"vhost"`
	Name     string `json:"name"`
	IfUnused bool   `json:"if_unused,omitempty"`
}

// DeclareQueue creates a queue or checks that it is equivalent. Name is
// never empty: the caller generates one first.
type DeclareQueue struct {
	VHost      string     `json:"vhost"`
	Name       string     `json:"name"`
	Durable    bool       `json:"durable,omitempty"`
	Exclusive  bool       `json:"exclusive,omitempty"`
	AutoDelete bool       `json:"auto_delete,omitempty"`
	Args       tableValue `json:"args"`
	Owner      Owner      `json:"owner,omitempty"`
}

// DeleteQueue deletes a queue; Count in the result is the messages it held.
type DeleteQueue struct {
	VHost    string `json:"vhost"`
	Name     string `json:"name"`
	Owner    Owner  `json:"owner,omitempty"`
	IfUnused bool   `json:"if_unused,omitempty"`
	IfEmpty  bool   `json:"if_empty,omitempty"`
}

// PurgeQueue drops a queue's ready messages; Count is how many.
type PurgeQueue struct {
	VHost string `json:"vhost"`
	Name  string `json:"name"`
	Owner Owner  `json:"owner,omitempty"`
}

// Bind adds a binding from exchange Source to Destination, a queue or,
// with ToExchange, an exchange.
type Bind struct {
	VHost       string     `json:"vhost"`
	Source      string     `json:"source"`
	Destination string     `json:"destination"`
	ToExchange  bool       `json:"to_exchange,omitempty"`
	RoutingKey  string     `json:"routing_key"`
	Args        tableValue `json:"args"`
	Owner       Owner      `json:"owner,omitempty"`
}

// Unbind removes a binding as Bind describes it.
type Unbind Bind

// PutPolicy creates or replaces a policy (see Policy).
type PutPolicy struct {
	VHost      string     `json:"vhost"`
	Name       string     `json:"name"`
	Pattern    string     `json:"pattern"`
	ApplyTo    string     `json:"apply_to,omitempty"`
	Priority   int        `json:"priority,omitempty"`
	Definition tableValue `json:"definition"`
}

// DeletePolicy removes a policy.
type DeletePolicy struct {
	VHost string `json:"vhost"`
	Name  string `json:"name"`
}

func (CreateVHost) Type() string     { return cmdCreateVHost }
func (DeleteVHost) Type() string     { return cmdDeleteVHost }
func (DeclareExchange) Type() string { return cmdDeclareExchange }
func (DeleteExchange) Type() string  { return cmdDeleteExchange }
func (DeclareQueue) Type() string    { return cmdDeclareQueue }
func (DeleteQueue) Type() string     { return cmdDeleteQueue }
func (PurgeQueue) Type() string      { return cmdPurgeQueue }
func (Bind) Type() string            { return cmdBind }
func (Unbind) Type() string          { return cmdUnbind }
func (PutPolicy) Type() string       { return cmdPutPolicy }
func (DeletePolicy) Type() string    { return cmdDeletePolicy }

// Result is what applying a command produced: the object declared or
// created, or a count (messages deleted or purged, queues of a vhost).
type Result struct {
	VHost    *VHost
	Exchange *Exchange
	Queue    *Queue
	Count    int
}

// Apply performs one state change. Names reserved for the broker (amq.*)
// are refused by the exported methods, not here: Apply also replays the
// broker's own generated names.
func (b *Broker) Apply(c Command) (Result, error) {
	switch c := c.(type) {
	case CreateVHost:
		return Result{VHost: b.addVHost(c.VHost)}, nil
	case DeleteVHost:
		n, err := b.deleteVHost(c.VHost)
		return Result{Count: n}, err
	}
	name, ok := vhostOf(c)
	if !ok {
		return Result{}, errorf(CodeCommandInvalid, "unknown command %T", c)
	}
	v := b.VHost(name)
	if v == nil {
		return Result{}, errorf(CodeNotFound, "no vhost '%s'", name)
	}
	return v.apply(c)
}

func vhostOf(c Command) (string, bool) {
	switch c := c.(type) {
	case DeclareExchange:
		return c.VHost, true
	case DeleteExchange:
		return c.VHost, true
	case DeclareQueue:
		return c.VHost, true
	case DeleteQueue:
		return c.VHost, true
	case PurgeQueue:
		return c.VHost, true
	case Bind:
		return c.VHost, true
	case Unbind:
		return c.VHost, true
	case PutPolicy:
		return c.VHost, true
	case DeletePolicy:
		return c.VHost, true
	}
	return "", false
}

// apply performs a vhost-scoped command on v (whatever name it carries:
// the exported methods of a VHost apply to that VHost, even one deleted
// since, which then refuses declarations).
func (v *VHost) apply(c Command) (Result, error) {
	switch c := c.(type) {
	case DeclareExchange:
		e, err := v.applyDeclareExchange(c)
		return Result{Exchange: e}, err
	case DeleteExchange:
		return Result{}, v.applyDeleteExchange(c)
	case DeclareQueue:
		q, err := v.applyDeclareQueue(c)
		return Result{Queue: q}, err
	case DeleteQueue:
		n, err := v.applyDeleteQueue(c)
		return Result{Count: n}, err
	case PurgeQueue:
		q, err := v.UsableQueue(c.Name, c.Owner)
		if err != nil {
			return Result{}, err
		}
		if r, ok := q.kind.(interface{ purgeRefused() error }); ok {
			return Result{}, r.purgeRefused() // a stream: messages leave by retention only
		}
		return Result{Count: q.kind.purge()}, nil
	case Bind:
		return Result{}, v.applyBind(c)
	case Unbind:
		return Result{}, v.applyUnbind(c)
	case PutPolicy:
		return Result{}, v.applyPutPolicy(c)
	case DeletePolicy:
		return Result{}, v.applyDeletePolicy(c)
	}
	return Result{}, errorf(CodeCommandInvalid, "unknown command %T", c)
}

// The encoding: {"type": "queue.declare", "command": {...}}. Tables
// (arguments, policy definitions) keep their value types: they are written
// in the broker's stored-table form (meta.go, frozen tags), base64 in JSON.

type envelope struct {
	Type    string          `json:"type"`
	Command json.RawMessage `json:"command"`
}

// EncodeCommand returns c's stable encoding.
func EncodeCommand(c Command) ([]byte, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return json.Marshal(envelope{Type: c.Type(), Command: body})
}

var errBadCommand = errors.New("malformed command")

// DecodeCommand parses what EncodeCommand wrote.
func DecodeCommand(b []byte) (Command, error) {
	var env envelope
	if err := strictJSON(b, &env); err != nil {
		return nil, err
	}
	switch env.Type {
	case cmdCreateVHost:
		return decodeAs[CreateVHost](env.Command)
	case cmdDeleteVHost:
		return decodeAs[DeleteVHost](env.Command)
	case cmdDeclareExchange:
		return decodeAs[DeclareExchange](env.Command)
	case cmdDeleteExchange:
		return decodeAs[DeleteExchange](env.Command)
	case cmdDeclareQueue:
		return decodeAs[DeclareQueue](env.Command)
	case cmdDeleteQueue:
		return decodeAs[DeleteQueue](env.Command)
	case cmdPurgeQueue:
		return decodeAs[PurgeQueue](env.Command)
	case cmdBind:
		return decodeAs[Bind](env.Command)
	case cmdUnbind:
		return decodeAs[Unbind](env.Command)
	case cmdPutPolicy:
		return decodeAs[PutPolicy](env.Command)
	case cmdDeletePolicy:
		return decodeAs[DeletePolicy](env.Command)
	}
	return nil, fmt.Errorf("%w: unknown type %q", errBadCommand, env.Type)
}

func decodeAs[T Command](raw json.RawMessage) (Command, error) {
	var c T
	if err := strictJSON(raw, &c); err != nil {
		return nil, err
	}
	return c, nil
}

func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", errBadCommand, err)
	}
	if d.More() {
		return fmt.Errorf("%w: trailing data", errBadCommand)
	}
	return nil
}

// tableValue is a Table in a command: JSON carries it as base64 of the
// stored-table form, so int8 stays int8 and a timestamp a timestamp. A
// Table is assignable to it as it is.
type tableValue map[string]any

// MarshalJSON implements json.Marshaler.
func (t tableValue) MarshalJSON() ([]byte, error) {
	if t == nil {
		return []byte("null"), nil
	}
	return json.Marshal(appendTable(nil, Table(t), 0))
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *tableValue) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	r := &metaReader{b: raw}
	tab := r.table(0)
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: trailing bytes", errBadMeta)
	}
	if r.err != nil {
		return r.err
	}
	*t = tableValue(tab)
	return nil
}
