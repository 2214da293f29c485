package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// runCtl implements `herald ctl`: rabbitmqctl/rabbitmqadmin-style commands
// over the management HTTP API, so it works against any Herald (and, for
// the RabbitMQ-compatible parts, any RabbitMQ) it can reach.
func runCtl(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := ctlOptions{}
	fs.StringVar(&o.url, "url", envOr("HERALD_CTL_URL", "http://localhost:15672"), "management API base URL (HERALD_CTL_URL)")
	fs.StringVar(&o.user, "user", envOr("HERALD_CTL_USER", "guest"), "user name (HERALD_CTL_USER)")
	fs.StringVar(&o.password, "password", envOr("HERALD_CTL_PASSWORD", "guest"), "password (HERALD_CTL_PASSWORD)")
	fs.StringVar(&o.vhost, "vhost", envOr("HERALD_CTL_VHOST", "/"), "virtual host (HERALD_CTL_VHOST)")
	fs.BoolVar(&o.json, "json", false, "print JSON instead of tables")
	fs.IntVar(&o.n, "n", 0, "number of messages (peek: 10, move: all)")
	fs.BoolVar(&o.durable, "durable", true, "declare: durable")
	fs.BoolVar(&o.autoDelete, "auto-delete", false, "declare: auto-delete")
	fs.StringVar(&o.kind, "type", "direct", "declare exchange: direct, fanout, topic, headers")
	fs.StringVar(&o.arguments, "arguments", "", `declare: arguments as JSON ({"x-max-length": 10})`)
	fs.StringVar(&o.tags, "tags", "", "add user: comma-separated tags (administrator, management, ...)")
	fs.StringVar(&o.configure, "configure", ".*", "set permissions: configure pattern")
	fs.StringVar(&o.write, "write", ".*", "set permissions: write pattern")
	fs.StringVar(&o.read, "read", ".*", "set permissions: read pattern")
	fs.StringVar(&o.pattern, "pattern", "", "set policy: queue name pattern (regular expression)")
	fs.StringVar(&o.definition, "definition", "", `set policy: definition as JSON ({"max-length": 10})`)
	fs.IntVar(&o.priority, "priority", 0, "set policy: priority")
	fs.StringVar(&o.applyTo, "apply-to", "queues", "set policy: queues, exchanges or all")
	fs.StringVar(&o.reason, "reason", "Closed via herald ctl", "close connection: reason given to the client")
	addMoreCtlFlags(fs, &o.more)
	fs.Usage = func() {
		fmt.Fprint(stderr, ctlUsage+ctlMoreUsage+ctlClusterUsage+"\nFlags:\n")
		fs.PrintDefaults()
	}
	// Flags may come anywhere: parse, take one word, repeat.
	var words []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		words = append(words, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(words) < 2 {
		fs.Usage()
		return 2
	}
	fs.Visit(func(f *flag.Flag) { o.more.vhostSet = o.more.vhostSet || f.Name == "vhost" })
	o.more.vhostSet = o.more.vhostSet || os.Getenv("HERALD_CTL_VHOST") != ""
	c := &ctlClient{ctx: ctx, o: o, in: os.Stdin, out: stdout, http: &http.Client{Timeout: 30 * time.Second}}
	if err := c.run(words); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "herald ctl: %v\n\n", err)
			fs.Usage()
			return 2
		}
		fmt.Fprintf(stderr, "herald ctl: %v\n", err)
		return 1
	}
	return 0
}

const ctlUsage = `Usage: herald ctl [flags] COMMAND ...

Talks to the management API of a running herald (herald serve --http).

  list queues|exchanges|bindings|connections|consumers|users|vhosts|policies
  list alarms                             resource alarms in effect (memory, disk), by node; exit 1 if any
  list services                           RPC services, their instances and statistics, in every vhost
  describe service NAME                   one RPC service of --vhost: its instances, replies by status, latency
  declare queue NAME [--durable=false] [--auto-delete] [--arguments JSON]
  declare exchange NAME --type topic [--durable=false]
  delete queue NAME | delete exchange NAME
  add vhost NAME
  delete vhost NAME                       closes its connections, deletes its queues (and messages), exchanges, policies, permissions, limits
  purge queue NAME
  peek queue NAME [-n 10]                 show ready messages without taking them
  move messages FROM TO [-n N]            republish ready messages (e.g. a dead-letter queue back)
  delete message QUEUE ID                 drop one ready message (ID as peek shows it)
  add user NAME PASSWORD [--tags administrator]
  set permissions USER [--configure RE --write RE --read RE]
  set policy NAME --pattern RE --definition JSON [--priority N] [--apply-to queues]
  export definitions FILE                 "-" writes to standard output
  import definitions FILE
  close connection NAME [--reason TEXT]
  list stream-consumers STREAM            named consumers of a stream: stored offset, members
  set stream-offset STREAM CONSUMER N     store consumer's position (it resumes at N)
  delete stream-offset STREAM CONSUMER    forget consumer's stored position
  read stream STREAM [OFFSET] [-n 10]     messages of a stream from OFFSET (default: the first)
`

type ctlOptions struct {
	url, user, password, vhost   string
	json, durable, autoDelete    bool
	n, priority                  int
	kind, arguments, tags        string
	configure, write, read       string
	pattern, definition, applyTo string
	reason                       string
	more                         ctlMoreOptions // ctl_bindings.go
}

type usageError string

func (e usageError) Error() string { return string(e) }

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

type ctlClient struct {
	ctx  context.Context
	o    ctlOptions
	in   io.Reader // publish's payload when none is given
	out  io.Writer
	http *http.Client
}

// seg escapes one path segment ("/" is "%2F", as the API wants).
func seg(s string) string { return url.PathEscape(s) }

func (c *ctlClient) run(w []string) error {
	need := func(n int, form string) error {
		if len(w) != n {
			return usageError("usage: herald ctl " + form)
		}
		return nil
	}
	if handled, err := c.cluster(w); handled {
		return err
	}
	vh := seg(c.o.vhost)
	switch w[0] + " " + w[1] {
	case "list queues", "list exchanges", "list bindings", "list connections", "list consumers", "list users", "list vhosts", "list policies":
		return c.list(w[1])
	case "list alarms", "show alarms":
		return c.alarms()
	case "list services":
		return c.listServices()
	case "describe service":
		if err := need(3, "describe service NAME"); err != nil {
			return err
		}
		return c.describeService(w[2])
	case "list stream-consumers":
		if err := need(3, "list stream-consumers STREAM"); err != nil {
			return err
		}
		var rows []map[string]any
		if err := c.call("GET", "/api/streams/"+vh+"/"+seg(w[2])+"/consumers", nil, &rows); err != nil {
			return err
		}
		return c.table(rows, []string{"name", "offset", "stored", "members"})
	case "set stream-offset":
		if err := need(5, "set stream-offset STREAM CONSUMER OFFSET"); err != nil {
			return err
		}
		off, err := strconv.ParseUint(w[4], 10, 63)
		if err != nil {
			return usageError("herald ctl set stream-offset: OFFSET must be a non-negative integer")
		}
		return c.done("PUT", "/api/streams/"+vh+"/"+seg(w[2])+"/consumers/"+seg(w[3]), map[string]any{"offset": off},
			"consumer "+w[3]+" of "+w[2]+" resumes at offset "+w[4])
	case "delete stream-offset":
		if err := need(4, "delete stream-offset STREAM CONSUMER"); err != nil {
			return err
		}
		return c.done("DELETE", "/api/streams/"+vh+"/"+seg(w[2])+"/consumers/"+seg(w[3]), nil, "position of "+w[3]+" on "+w[2]+" forgotten")
	case "read stream":
		if len(w) != 3 && len(w) != 4 {
			return usageError("usage: herald ctl read stream STREAM [OFFSET] [-n N]")
		}
		from := "0"
		if len(w) == 4 {
			if _, err := strconv.ParseUint(w[3], 10, 64); err != nil {
				return usageError("herald ctl read stream: OFFSET must be a non-negative integer")
			}
			from = w[3]
		}
		n := c.o.n
		if n <= 0 {
			n = 10
		}
		var msgs []map[string]any
		if err := c.call("GET", fmt.Sprintf("/api/streams/%s/%s/messages?offset=%s&limit=%d", vh, seg(w[2]), from, n), nil, &msgs); err != nil {
			return err
		}
		return c.table(msgs, []string{"offset", "exchange", "routing_key", "payload_bytes", "payload"})
	case "declare queue":
		if err := need(3, "declare queue NAME"); err != nil {
			return err
		}
		body := map[string]any{"durable": c.o.durable, "auto_delete": c.o.autoDelete}
		if err := c.addArguments(body); err != nil {
			return err
		}
		return c.done("PUT", "/api/queues/"+vh+"/"+seg(w[2]), body, "queue "+w[2]+" declared")
	case "declare exchange":
		if err := need(3, "declare exchange NAME --type KIND"); err != nil {
			return err
		}
		body := map[string]any{"type": c.o.kind, "durable": c.o.durable, "auto_delete": c.o.autoDelete}
		if err := c.addArguments(body); err != nil {
			return err
		}
		return c.done("PUT", "/api/exchanges/"+vh+"/"+seg(w[2]), body, "exchange "+w[2]+" declared")
	case "delete queue":
		if err := need(3, "delete queue NAME"); err != nil {
			return err
		}
		return c.done("DELETE", "/api/queues/"+vh+"/"+seg(w[2]), nil, "queue "+w[2]+" deleted")
	case "delete exchange":
		if err := need(3, "delete exchange NAME"); err != nil {
			return err
		}
		return c.done("DELETE", "/api/exchanges/"+vh+"/"+seg(w[2]), nil, "exchange "+w[2]+" deleted")
	case "delete message":
		if err := need(4, "delete message QUEUE ID"); err != nil {
			return err
		}
		return c.done("DELETE", "/api/queues/"+vh+"/"+seg(w[2])+"/messages/"+seg(w[3]), nil, "message "+w[3]+" deleted from "+w[2])
	case "purge queue":
		if err := need(3, "purge queue NAME"); err != nil {
			return err
		}
		return c.done("DELETE", "/api/queues/"+vh+"/"+seg(w[2])+"/contents", nil, "queue "+w[2]+" purged")
	case "peek queue":
		if err := need(3, "peek queue NAME [-n N]"); err != nil {
			return err
		}
		n := c.o.n
		if n <= 0 {
			n = 10
		}
		var msgs []map[string]any
		if err := c.call("GET", fmt.Sprintf("/api/queues/%s/%s/messages?count=%d", vh, seg(w[2]), n), nil, &msgs); err != nil {
			return err
		}
		return c.table(msgs, []string{"id", "redelivered", "exchange", "routing_key", "payload_bytes", "payload"})
	case "move messages":
		if err := need(4, "move messages FROM TO [-n N]"); err != nil {
			return err
		}
		n := c.o.n
		if n <= 0 {
			n = 1 << 30 // everything ready
		}
		var r map[string]any
		if err := c.call("POST", "/api/queues/"+vh+"/"+seg(w[2])+"/move", map[string]any{"to": w[3], "count": n}, &r); err != nil {
			return err
		}
		if c.o.json {
			return c.printJSON(r)
		}
		fmt.Fprintf(c.out, "moved %v message(s) from %s to %s\n", r["moved"], w[2], w[3])
		if reason, ok := r["reason"]; ok {
			fmt.Fprintf(c.out, "stopped early: %v\n", reason)
		}
		return nil
	case "add vhost":
		if err := need(3, "add vhost NAME"); err != nil {
			return err
		}
		return c.done("PUT", "/api/vhosts/"+seg(w[2]), nil, "vhost "+w[2]+" added")
	case "delete vhost":
		if err := need(3, "delete vhost NAME"); err != nil {
			return err
		}
		return c.done("DELETE", "/api/vhosts/"+seg(w[2]), nil, "vhost "+w[2]+" deleted")
	case "add user":
		if err := need(4, "add user NAME PASSWORD [--tags T]"); err != nil {
			return err
		}
		return c.done("PUT", "/api/users/"+seg(w[2]), map[string]any{"password": w[3], "tags": c.o.tags}, "user "+w[2]+" saved")
	case "set permissions":
		if err := need(3, "set permissions USER [--configure RE --write RE --read RE]"); err != nil {
			return err
		}
		return c.done("PUT", "/api/permissions/"+vh+"/"+seg(w[2]),
			map[string]string{"configure": c.o.configure, "write": c.o.write, "read": c.o.read}, "permissions of "+w[2]+" in "+c.o.vhost+" set")
	case "set policy":
		if err := need(3, "set policy NAME --pattern RE --definition JSON"); err != nil {
			return err
		}
		if c.o.pattern == "" || c.o.definition == "" {
			return usageError("set policy needs --pattern and --definition")
		}
		var def map[string]any
		if err := json.Unmarshal([]byte(c.o.definition), &def); err != nil {
			return fmt.Errorf("--definition is not a JSON object: %w", err)
		}
		return c.done("PUT", "/api/policies/"+vh+"/"+seg(w[2]),
			map[string]any{"pattern": c.o.pattern, "definition": def, "priority": c.o.priority, "apply-to": c.o.applyTo}, "policy "+w[2]+" set")
	case "export definitions":
		if err := need(3, "export definitions FILE"); err != nil {
			return err
		}
		var doc json.RawMessage
		if err := c.call("GET", "/api/definitions", nil, &doc); err != nil {
			return err
		}
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, doc, "", "  "); err != nil {
			return err
		}
		pretty.WriteByte('\n')
		if w[2] == "-" {
			_, err := c.out.Write(pretty.Bytes())
			return err
		}
		if err := os.WriteFile(w[2], pretty.Bytes(), 0o600); err != nil {
			return fmt.Errorf("cannot write %s: %w", w[2], err)
		}
		fmt.Fprintf(c.out, "definitions exported to %s\n", w[2])
		return nil
	case "import definitions":
		if err := need(3, "import definitions FILE"); err != nil {
			return err
		}
		data, err := os.ReadFile(w[2])
		if err != nil {
			return fmt.Errorf("cannot read %s: %w", w[2], err)
		}
		if !json.Valid(data) {
			return fmt.Errorf("%s is not JSON; expected a RabbitMQ definitions export", w[2])
		}
		return c.done("POST", "/api/definitions", json.RawMessage(data), "definitions imported from "+w[2])
	case "close connection":
		if err := need(3, "close connection NAME"); err != nil {
			return err
		}
		return c.doRequest("DELETE", "/api/connections/"+seg(w[2]), nil, nil, http.Header{"X-Reason": {c.o.reason}}, "connection "+w[2]+" closed")
	}
	if handled, err := c.runMore(w); handled {
		return err
	}
	return usageError(fmt.Sprintf("unknown command %q", strings.Join(w, " ")))
}

func (c *ctlClient) addArguments(body map[string]any) error {
	if c.o.arguments == "" {
		return nil
	}
	var args map[string]any
	if err := json.Unmarshal([]byte(c.o.arguments), &args); err != nil {
		return fmt.Errorf("--arguments is not a JSON object: %w", err)
	}
	body["arguments"] = args
	return nil
}

// listColumns are the table columns of each list, RabbitMQ's field names.
var listColumns = map[string][]string{
	"queues":      {"vhost", "name", "type", "messages_ready", "messages_unacknowledged", "consumers", "durable", "policy"},
	"exchanges":   {"vhost", "name", "type", "durable", "auto_delete", "internal"},
	"bindings":    {"vhost", "source", "destination", "destination_type", "routing_key", "properties_key"},
	"connections": {"name", "protocol", "user", "vhost", "channels", "connected_at"},
	"consumers":   {"queue.vhost", "queue.name", "consumer_tag", "ack_required", "prefetch_count", "channel_details.connection_name"},
	"users":       {"name", "tags"},
	"vhosts":      {"name", "messages"},
	"policies":    {"vhost", "name", "pattern", "apply-to", "priority", "definition"},
}

func (c *ctlClient) list(what string) error {
	var rows []map[string]any
	if err := c.call("GET", c.listPath(what), nil, &rows); err != nil {
		return err
	}
	return c.table(rows, listColumns[what])
}

// table prints rows as aligned columns (or JSON with --json).
func (c *ctlClient) table(rows []map[string]any, cols []string) error {
	if c.o.json {
		return c.printJSON(rows)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, r := range rows {
		cells := make([]string, len(cols))
		for i, col := range cols {
			cells[i] = cell(lookup(r, col), col)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// lookup follows a dotted path ("queue.name") into nested objects.
func lookup(r map[string]any, path string) any {
	var v any = r
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func cell(v any, col string) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return strings.NewReplacer("\t", " ", "\n", " ").Replace(x)
	case float64:
		if col == "connected_at" {
			return time.UnixMilli(int64(x)).Format(time.RFC3339)
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cell(e, "")
		}
		return strings.Join(parts, ",")
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + cell(x[k], "")
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}

func (c *ctlClient) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// done runs a command that answers no content and prints what happened.
func (c *ctlClient) done(method, path string, body any, what string) error {
	return c.doRequest(method, path, body, nil, nil, what)
}

func (c *ctlClient) call(method, path string, body, out any) error {
	return c.doRequest(method, path, body, out, nil, "")
}

func (c *ctlClient) doRequest(method, path string, body, out any, hdr http.Header, what string) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	base := strings.TrimSuffix(c.o.url, "/")
	req, err := http.NewRequestWithContext(c.ctx, method, base+path, rd)
	if err != nil {
		return fmt.Errorf("bad --url %q: %w", c.o.url, err)
	}
	req.SetBasicAuth(c.o.user, c.o.password)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("cannot reach %s: connection refused — is herald running with --http?", base)
		}
		return fmt.Errorf("cannot reach %s: %w — is herald running with --http, and is --url right?", base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error, Reason string }
		_ = json.Unmarshal(data, &e)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("login refused for user %q — check --user and --password (HERALD_CTL_USER, HERALD_CTL_PASSWORD); guest only works from localhost", c.o.user)
		case http.StatusForbidden:
			return fmt.Errorf("user %q may not do this: %s — it needs a tag (administrator, policymaker) or permissions in vhost %q", c.o.user, e.Reason, c.o.vhost)
		}
		if e.Reason == "" {
			e.Reason = strings.TrimSpace(string(data))
		}
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, e.Reason)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
		}
		return nil
	}
	if what != "" {
		fmt.Fprintln(c.out, what)
	}
	return nil
}

// alarms prints the resource alarms in effect: the nodes (/api/nodes) say
// which alarm each has raised, and the health check
// (/api/health/checks/alarms, 503 while one is raised) gives the
// broker's verdict. It fails (exit 1) while an alarm is in effect, as
// the health check does, so scripts can use it.
func (c *ctlClient) alarms() error {
	var nodes []map[string]any
	if err := c.call("GET", "/api/nodes", nil, &nodes); err != nil {
		return err
	}
	var rows []map[string]any
	for _, n := range nodes {
		for _, a := range []struct{ field, resource string }{{"mem_alarm", "memory"}, {"disk_free_alarm", "disk"}} {
			if on, _ := n[a.field].(bool); on {
				rows = append(rows, map[string]any{"node": n["name"], "resource": a.resource})
			}
		}
	}
	healthErr := c.call("GET", "/api/health/checks/alarms", nil, &map[string]any{})
	if c.o.json {
		if rows == nil {
			rows = []map[string]any{}
		}
		if err := c.printJSON(rows); err != nil {
			return err
		}
	} else if len(rows) > 0 {
		if err := c.table(rows, []string{"node", "resource"}); err != nil {
			return err
		}
	} else if healthErr == nil {
		fmt.Fprintln(c.out, "no alarms in effect")
	}
	if healthErr != nil {
		return fmt.Errorf("alarm health check failed: %w", healthErr)
	}
	return nil
}
