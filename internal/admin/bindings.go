package admin

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"net/http"
	"net/url"
	"strings"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web/jsonmsg"
)

// Bindings in the paths and JSON shape of RabbitMQ's management API:
//
//	GET  /api/bindings[/{vhost}]
//	GET  /api/bindings/{vhost}/e/{source}/q/{queue}            (list; POST creates)
//	GET  /api/bindings/{vhost}/e/{source}/q/{queue}/{props}    (one; DELETE removes)
//	     /api/bindings/{vhost}/e/{source}/e/{destination}[/{props}]   the same for exchange-to-exchange
//	GET  /api/queues/{vhost}/{name}/bindings
//	GET  /api/exchanges/{vhost}/{name}/bindings/source|destination
//
// A binding is named within its source and destination by its properties
// key (see propertiesKey). Unlike RabbitMQ, which lists nothing for an
// exchange or queue that does not exist, these answer 404, as every other
// Herald endpoint does for an unknown object.

type BindingJSON struct {
	Source          string         `json:"source"`
	VHost           string         `json:"vhost"`
	Destination     string         `json:"destination"`
	DestinationType string         `json:"destination_type"`
	RoutingKey      string         `json:"routing_key"`
	Arguments       map[string]any `json:"arguments"`
	PropertiesKey   string         `json:"properties_key"`
}

func newBindingJSON(v *broker.VHost, b broker.Binding) BindingJSON {
	return BindingJSON{Source: b.Source, VHost: v.Name(), Destination: b.Destination,
		DestinationType: b.DestinationKind, RoutingKey: b.RoutingKey, Arguments: argsJSON(b.Args),
		PropertiesKey: propertiesKey(b.RoutingKey, b.Args)}
}

// defaultBinding is the default exchange's implicit binding of q, keyed
// by the queue's name, which RabbitMQ lists with the others.
func defaultBinding(q *broker.Queue) broker.Binding {
	return broker.Binding{Destination: q.Name(), DestinationKind: "queue", RoutingKey: q.Name()}
}

// propertiesKey is RabbitMQ's binding id within a source and destination
// (rabbit_mgmt_format:pack_binding_props): "~" for an empty routing key
// without arguments; else the key, form-escaped (a space is "+") with "~"
// escaped as "%7E", followed, when there are arguments, by "~" and a
// hash of them. RabbitMQ hashes the Erlang term of the arguments
// (erlang:phash2); Herald hashes their JSON with FNV-1a. Both are 32 bits
// in unpadded base64url, so keys look alike, but a key with arguments is
// only meaningful to the broker that listed it.
func propertiesKey(key string, args broker.Table) string {
	if key == "" && len(args) == 0 {
		return "~"
	}
	pk := quoteBinding(key)
	if len(args) > 0 {
		pk += "~" + quoteBinding(argsHash(args))
	}
	return pk
}

func quoteBinding(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "~", "%7E")
}

func argsHash(args broker.Table) string {
	// encoding/json sorts map keys, so equal tables hash alike.
	j, _ := json.Marshal(jsonmsg.TableToJSON(args))
	h := fnv.New32a()
	_, _ = h.Write(j)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], h.Sum32())
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *Server) listBindings(w http.ResponseWriter, r *http.Request) {
	listPerVHost(s, w, r, "destination", func(v *broker.VHost, out []BindingJSON) []BindingJSON {
		for _, q := range v.Queues() {
			out = append(out, newBindingJSON(v, defaultBinding(q)))
		}
		for _, e := range v.Exchanges() {
			for _, b := range e.Bindings() {
				out = append(out, newBindingJSON(v, b))
			}
		}
		return out
	})
}

// bindingEnds resolves the vhost, source and destination of a
// /api/bindings/{vhost}/e/{source}/{dtype}/{destination} path, answering
// 404 for any that does not exist. dkind is "queue" or "exchange".
func (s *Server) bindingEnds(w http.ResponseWriter, r *http.Request) (v *broker.VHost, src *broker.Exchange, dkind string, ok bool) {
	switch r.PathValue("dtype") {
	case "q":
		dkind = "queue"
	case "e":
		dkind = "exchange"
	default:
		writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
		return nil, nil, "", false
	}
	if v = s.vhostOf(w, r.PathValue("vhost")); v == nil {
		return nil, nil, "", false
	}
	src, err := v.Exchange(exchangeName(r.PathValue("source")))
	if err != nil {
		writeBrokerError(w, err)
		return nil, nil, "", false
	}
	dest := r.PathValue("destination")
	if dkind == "queue" {
		_, err = v.Queue(dest)
	} else {
		_, err = v.Exchange(exchangeName(dest))
	}
	if err != nil {
		writeBrokerError(w, err)
		return nil, nil, "", false
	}
	return v, src, dkind, true
}

// between lists the bindings from src to the destination of the path,
// the default exchange's implicit one included.
func between(v *broker.VHost, src *broker.Exchange, dkind, dest string) []broker.Binding {
	var out []broker.Binding
	if src.Name() == "" {
		if q, err := v.Queue(dest); dkind == "queue" && err == nil {
			out = append(out, defaultBinding(q))
		}
		return out
	}
	for _, b := range src.Bindings() {
		if b.DestinationKind == dkind && b.Destination == exchangeName(dest) {
			out = append(out, b)
		}
	}
	return out
}

func (s *Server) listBindingsBetween(w http.ResponseWriter, r *http.Request) {
	v, src, dkind, ok := s.bindingEnds(w, r)
	if !ok {
		return
	}
	out := []BindingJSON{}
	for _, b := range between(v, src, dkind, r.PathValue("destination")) {
		out = append(out, newBindingJSON(v, b))
	}
	writeList(w, r, out, "routing_key")
}

// findBinding answers 404 unless the {props} of the path names a binding
// between the path's source and destination. The router has unescaped
// the segment once, which undoes the escaping a client applies to the
// properties_key it listed (rabbitmqadmin quotes it, as the segment it is).
func (s *Server) findBinding(w http.ResponseWriter, r *http.Request) (*broker.VHost, broker.Binding, bool) {
	v, src, dkind, ok := s.bindingEnds(w, r)
	if !ok {
		return nil, broker.Binding{}, false
	}
	for _, b := range between(v, src, dkind, r.PathValue("destination")) {
		if propertiesKey(b.RoutingKey, b.Args) == r.PathValue("props") {
			return v, b, true
		}
	}
	writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
	return nil, broker.Binding{}, false
}

func (s *Server) showBinding(w http.ResponseWriter, r *http.Request) {
	if v, b, ok := s.findBinding(w, r); ok {
		writeJSON(w, http.StatusOK, newBindingJSON(v, b))
	}
}

// allowBind checks what the AMQP bind or unbind needs: write on the
// destination, read on the source.
func (s *Server) allowBind(w http.ResponseWriter, r *http.Request, v *broker.VHost, source, dkind, dest string) bool {
	res := auth.Queue
	if dkind == "exchange" {
		res = auth.Exchange
	}
	return s.allowMgmt(w, r, v, res, dest, auth.Write) && s.allowMgmt(w, r, v, auth.Exchange, source, auth.Read)
}

// createBinding is POST /api/bindings/{vhost}/e/{source}/{q|e}/{destination}
// with {"routing_key": ..., "arguments": {...}}: 201 with the new
// binding's location relative to the request, as RabbitMQ answers it
// ("{destination}/{properties_key}"), also when the binding existed.
func (s *Server) createBinding(w http.ResponseWriter, r *http.Request) {
	v, _, dkind, ok := s.bindingEnds(w, r)
	if !ok {
		return
	}
	source, dest := exchangeName(r.PathValue("source")), r.PathValue("destination")
	if dkind == "exchange" {
		dest = exchangeName(dest)
	}
	if !s.allowBind(w, r, v, source, dkind, dest) {
		return
	}
	req := struct {
		RoutingKey string         `json:"routing_key"`
		Arguments  map[string]any `json:"arguments"`
	}{}
	if !s.decodeBody(w, r, &req) {
		return
	}
	args, ok := argumentsFromJSON(w, req.Arguments)
	if !ok {
		return
	}
	if err := s.checkTopic(userOf(r), v, auth.Read, source, req.RoutingKey); err != nil {
		writeBrokerError(w, err) // a bind: topic permissions apply, as in RabbitMQ
		return
	}
	var err error
	if dkind == "queue" {
		err = v.BindQueue(dest, source, req.RoutingKey, args, 0)
	} else {
		err = v.BindExchange(dest, source, req.RoutingKey, args)
	}
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	s.log.Info("binding created", "vhost", v.Name(), "source", source, "destination", dest, "destination_type", dkind,
		"routing_key", req.RoutingKey, "by", userOf(r).Name)
	// The key escaped once more, as RabbitMQ (quote_plus: "a+b" is
	// "a%2Bb"); it holds no space, so the form escape suits a path.
	w.Header().Set("Location", url.PathEscape(r.PathValue("destination"))+"/"+url.QueryEscape(propertiesKey(req.RoutingKey, args)))
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) deleteBinding(w http.ResponseWriter, r *http.Request) {
	v, b, ok := s.findBinding(w, r)
	if !ok || !s.allowBind(w, r, v, b.Source, b.DestinationKind, b.Destination) {
		return
	}
	var err error
	if b.DestinationKind == "queue" {
		err = v.UnbindQueue(b.Destination, b.Source, b.RoutingKey, b.Args, 0)
	} else {
		err = v.UnbindExchange(b.Destination, b.Source, b.RoutingKey, b.Args)
	}
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	s.log.Info("binding deleted", "vhost", v.Name(), "source", b.Source, "destination", b.Destination,
		"destination_type", b.DestinationKind, "routing_key", b.RoutingKey, "by", userOf(r).Name)
	w.WriteHeader(http.StatusNoContent)
}

// queueBindings is GET /api/queues/{vhost}/{name}/bindings: every binding
// to the queue, the default exchange's first.
func (s *Server) queueBindings(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil {
		return
	}
	q, err := v.Queue(r.PathValue("name"))
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	out := []BindingJSON{newBindingJSON(v, defaultBinding(q))}
	for _, e := range v.Exchanges() {
		for _, b := range e.Bindings() {
			if b.DestinationKind == "queue" && b.Destination == q.Name() {
				out = append(out, newBindingJSON(v, b))
			}
		}
	}
	writeList(w, r, out, "source")
}

// exchangeBindings is GET /api/exchanges/{vhost}/{name}/bindings/source
// (the bindings from the exchange) and .../destination (the
// exchange-to-exchange bindings to it).
func (s *Server) exchangeBindings(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil {
		return
	}
	e, err := v.Exchange(exchangeName(r.PathValue("name")))
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	out := []BindingJSON{}
	if strings.HasSuffix(r.Pattern, "/source") {
		if e.Name() == "" {
			for _, q := range v.Queues() {
				out = append(out, newBindingJSON(v, defaultBinding(q)))
			}
		}
		for _, b := range e.Bindings() {
			out = append(out, newBindingJSON(v, b))
		}
	} else {
		for _, x := range v.Exchanges() {
			for _, b := range x.Bindings() {
				if b.DestinationKind == "exchange" && b.Destination == e.Name() {
					out = append(out, newBindingJSON(v, b))
				}
			}
		}
	}
	writeList(w, r, out, "destination")
}

// bindingRoutes registers the binding endpoints (mg: management users).
func (s *Server) bindingRoutes(mg func(string, http.HandlerFunc)) {
	mg("GET /api/bindings", s.listBindings)
	mg("GET /api/bindings/{vhost}", s.listBindings)
	mg("GET /api/bindings/{vhost}/e/{source}/{dtype}/{destination}", s.listBindingsBetween)
	mg("POST /api/bindings/{vhost}/e/{source}/{dtype}/{destination}", s.createBinding)
	mg("GET /api/bindings/{vhost}/e/{source}/{dtype}/{destination}/{props}", s.showBinding)
	mg("DELETE /api/bindings/{vhost}/e/{source}/{dtype}/{destination}/{props}", s.deleteBinding)
	mg("GET /api/queues/{vhost}/{name}/bindings", s.queueBindings)
	mg("GET /api/exchanges/{vhost}/{name}/bindings/source", s.exchangeBindings)
	mg("GET /api/exchanges/{vhost}/{name}/bindings/destination", s.exchangeBindings)
}
