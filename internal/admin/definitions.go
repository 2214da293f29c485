package admin

import (
	"errors"
	"io"
	"net/http"

	"github.com/heraldmq/herald/internal/definitions"
)

// Definitions export and import in RabbitMQ's format (the document of
// `rabbitmqctl export_definitions`), shared with the durable definitions
// file through internal/definitions. Administrator only, as RabbitMQ:
// the export holds password hashes.

// exportDefinitions is GET /api/definitions and GET
// /api/definitions/{vhost} (that vhost's topology only). It holds what the
// definitions file holds: durable, non-exclusive objects (exclusive and
// server-named queues belong to a connection and would not mean anything
// imported elsewhere).
func (s *Server) exportDefinitions(w http.ResponseWriter, r *http.Request) {
	doc := definitions.Export(s.broker, s.users, true)
	doc.ProductVersion = s.cfg.Version
	if r.PathValue("vhost") != "" {
		v := s.vhostOf(w, r.PathValue("vhost"))
		if v == nil {
			return
		}
		doc = definitions.Filter(doc, v.Name())
	}
	if r.URL.Query().Get("download") != "" {
		w.Header().Set("Content-Disposition", `attachment; filename="herald-definitions.json"`)
	}
	writeJSON(w, http.StatusOK, doc)
}

// importDefinitions is POST /api/definitions: it merges a definitions
// document into the broker and the users (nothing is deleted). What can
// be imported is; the problems are answered with 400 and listed.
func (s *Server) importDefinitions(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodySize)
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "bad_request", "request body too large")
			return
		}
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	// Decoded without json.Number: the core normalizes float64 arguments.
	doc, err := definitions.Parse(data)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if r.PathValue("vhost") != "" {
		// RabbitMQ's per-vhost import: every object goes into that vhost.
		v := s.vhostOf(w, r.PathValue("vhost"))
		if v == nil {
			return
		}
		doc = retarget(doc, v.Name())
	}
	if err := definitions.Import(s.broker, s.users, doc, false); err != nil {
		s.log.Warn("definitions imported with errors", "by", userOf(r).Name, "err", err)
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	s.log.Info("definitions imported", "by", userOf(r).Name, "vhosts", len(doc.VHosts), "queues", len(doc.Queues),
		"exchanges", len(doc.Exchanges), "bindings", len(doc.Bindings), "policies", len(doc.Policies))
	w.WriteHeader(http.StatusNoContent)
}

// retarget moves a document's topology into one vhost and drops users,
// permissions and vhosts, as RabbitMQ's POST /api/definitions/{vhost}.
func retarget(doc definitions.Document, vhost string) definitions.Document {
	doc.Users, doc.Permissions, doc.VHosts = nil, nil, nil
	for i := range doc.Queues {
		doc.Queues[i].VHost = vhost
	}
	for i := range doc.Exchanges {
		doc.Exchanges[i].VHost = vhost
	}
	for i := range doc.Bindings {
		doc.Bindings[i].VHost = vhost
	}
	for i := range doc.Policies {
		doc.Policies[i].VHost = vhost
	}
	return doc
}
