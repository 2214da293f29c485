package main

import (
	"flag"
	"fmt"
	"strings"
)

// More `herald ctl` commands, beside ctl.go's: bindings, messages
// (publish, get), deleting users, policies and permissions, and lists
// narrowed to one vhost.

const ctlMoreUsage = `  declare binding SOURCE DESTINATION [--routing-key K] [--destination-type queue|exchange] [--arguments JSON]
  delete binding SOURCE DESTINATION [--routing-key K] [--destination-type exchange] [--properties-key PK]
                                          PK (from list bindings) picks one of several bindings with the same key
  delete user NAME | delete policy NAME | delete permissions USER
  publish EXCHANGE ROUTING_KEY [PAYLOAD]  PAYLOAD "-" or absent: standard input; "" or amq.default is the default exchange
                                          [--properties JSON]
  get queue NAME [-n 1] [--ackmode ack_requeue_true|ack_requeue_false|reject_requeue_true|reject_requeue_false]
  list ... --vhost V                      queues, exchanges, bindings, consumers, connections, policies of vhost V only
`

// ctlMoreOptions are the flags of these commands.
type ctlMoreOptions struct {
	routingKey, destType, propsKey string
	properties, ackmode            string
	vhostSet                       bool // --vhost or HERALD_CTL_VHOST given: lists narrow to it
}

func addMoreCtlFlags(fs *flag.FlagSet, o *ctlMoreOptions) {
	fs.StringVar(&o.routingKey, "routing-key", "", "declare/delete binding: routing key")
	fs.StringVar(&o.destType, "destination-type", "queue", "declare/delete binding: queue or exchange")
	fs.StringVar(&o.propsKey, "properties-key", "", "delete binding: the binding's properties_key, as list bindings shows it")
	fs.StringVar(&o.properties, "properties", "", `publish: message properties as JSON ({"delivery_mode": 2, "headers": {...}})`)
	fs.StringVar(&o.ackmode, "ackmode", "ack_requeue_true", "get: ack_requeue_true (look, leave the messages), ack_requeue_false (take them), reject_requeue_true or reject_requeue_false")
}

// runMore runs the commands of this file; handled is false for others.
func (c *ctlClient) runMore(w []string) (handled bool, err error) {
	need := func(n int, form string) error {
		if len(w) != n {
			return usageError("usage: herald ctl " + form)
		}
		return nil
	}
	vh := seg(c.o.vhost)
	switch w[0] + " " + w[1] {
	case "declare binding":
		if err := need(4, "declare binding SOURCE DESTINATION [--routing-key K] [--destination-type queue|exchange]"); err != nil {
			return true, err
		}
		d, err := c.destChar()
		if err != nil {
			return true, err
		}
		body := map[string]any{"routing_key": c.o.more.routingKey}
		if err := c.addArguments(body); err != nil {
			return true, err
		}
		return true, c.done("POST", "/api/bindings/"+vh+"/e/"+seg(exchangeSeg(w[2]))+"/"+d+"/"+seg(w[3]), body,
			fmt.Sprintf("binding %s -> %s (routing key %q) declared", w[2], w[3], c.o.more.routingKey))
	case "delete binding":
		if err := need(4, "delete binding SOURCE DESTINATION [--routing-key K] [--properties-key PK]"); err != nil {
			return true, err
		}
		return true, c.deleteBinding(w[2], w[3])
	case "delete user":
		if err := need(3, "delete user NAME"); err != nil {
			return true, err
		}
		return true, c.done("DELETE", "/api/users/"+seg(w[2]), nil, "user "+w[2]+" deleted")
	case "delete policy":
		if err := need(3, "delete policy NAME"); err != nil {
			return true, err
		}
		return true, c.done("DELETE", "/api/policies/"+vh+"/"+seg(w[2]), nil, "policy "+w[2]+" deleted")
	case "delete permissions", "clear permissions":
		if err := need(3, "delete permissions USER"); err != nil {
			return true, err
		}
		return true, c.done("DELETE", "/api/permissions/"+vh+"/"+seg(w[2]), nil, "permissions of "+w[2]+" in "+c.o.vhost+" deleted")
	case "get queue":
		if err := need(3, "get queue NAME [-n N] [--ackmode MODE]"); err != nil {
			return true, err
		}
		return true, c.get(w[2])
	}
	if w[0] == "publish" {
		if len(w) < 3 || len(w) > 4 {
			return true, usageError("usage: herald ctl publish EXCHANGE ROUTING_KEY [PAYLOAD]")
		}
		return true, c.publish(w[1:])
	}
	return false, nil
}

// destChar is the path's destination type: "q" or "e".
func (c *ctlClient) destChar() (string, error) {
	switch c.o.more.destType {
	case "queue", "q":
		return "q", nil
	case "exchange", "e":
		return "e", nil
	}
	return "", usageError(fmt.Sprintf("--destination-type must be queue or exchange, not %q", c.o.more.destType))
}

// exchangeSeg names the default exchange as the API does.
func exchangeSeg(name string) string {
	if name == "" {
		return "amq.default"
	}
	return name
}

// deleteBinding finds the binding from source to dest by its routing key
// (or its properties key) and deletes it by its properties key.
func (c *ctlClient) deleteBinding(source, dest string) error {
	d, err := c.destChar()
	if err != nil {
		return err
	}
	path := "/api/bindings/" + seg(c.o.vhost) + "/e/" + seg(exchangeSeg(source)) + "/" + d + "/" + seg(dest)
	var bs []map[string]any
	if err := c.call("GET", path, nil, &bs); err != nil {
		return err
	}
	var keys []string
	for _, b := range bs {
		pk, _ := b["properties_key"].(string)
		if c.o.more.propsKey != "" && pk == c.o.more.propsKey ||
			c.o.more.propsKey == "" && b["routing_key"] == c.o.more.routingKey {
			keys = append(keys, pk)
		}
	}
	switch {
	case len(keys) == 0 && c.o.more.propsKey != "":
		return fmt.Errorf("no binding from %s to %s has properties key %q (see herald ctl list bindings --json)", source, dest, c.o.more.propsKey)
	case len(keys) == 0:
		return fmt.Errorf("no binding from %s to %s has routing key %q (give it with --routing-key)", source, dest, c.o.more.routingKey)
	case len(keys) > 1:
		return fmt.Errorf("%d bindings from %s to %s have routing key %q, with different arguments: pick one with --properties-key (%s)",
			len(keys), source, dest, c.o.more.routingKey, strings.Join(keys, ", "))
	}
	return c.done("DELETE", path+"/"+seg(keys[0]), nil, fmt.Sprintf("binding %s -> %s (properties key %s) deleted", source, dest, keys[0]))
}

// listPath is the API path of list WHAT: narrowed to --vhost when given.
func (c *ctlClient) listPath(what string) string {
	if !c.o.more.vhostSet {
		return "/api/" + what
	}
	switch what {
	case "queues", "exchanges", "bindings", "consumers", "policies":
		return "/api/" + what + "/" + seg(c.o.vhost)
	case "connections":
		return "/api/vhosts/" + seg(c.o.vhost) + "/connections"
	}
	return "/api/" + what
}
