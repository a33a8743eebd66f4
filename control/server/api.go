package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/weftmesh/weft/control/filesource"
	"github.com/weftmesh/weft/control/kube"
	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/registry"
	"github.com/weftmesh/weft/control/store"
	"github.com/weftmesh/weft/control/ui"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /v1/resources", s.guard(viewer, s.handleList))
	mux.HandleFunc("GET /v1/resources/{kind}", s.guard(viewer, s.handleList))
	mux.HandleFunc("GET /v1/resources/{kind}/{namespace}/{name}", s.guard(viewer, s.handleGet))
	mux.HandleFunc("POST /v1/resources", s.guard(editor, s.handleCreate))
	mux.HandleFunc("PUT /v1/resources/{kind}/{namespace}/{name}", s.guard(editor, s.handleReplace))
	mux.HandleFunc("DELETE /v1/resources/{kind}/{namespace}/{name}", s.guard(editor, s.handleDelete))
	mux.HandleFunc("POST /v1/apply", s.guard(editor, s.handleApply))
	mux.HandleFunc("POST /v1/modules", s.guard(editor, s.handleModuleUpload))
	mux.HandleFunc("GET /v1/modules", s.guard(viewer, s.handleModuleList))
	mux.HandleFunc("GET /v1/modules/{sha256}", s.guard(nodeOrViewer, s.handleModuleGet))
	mux.HandleFunc("GET /v1/watch", s.guard(nodeOnly, s.handleWatch))
	mux.HandleFunc("POST /v1/ack", s.guard(nodeOnly, s.handleAck))
	mux.HandleFunc("GET /v1/status", s.guard(viewer, s.handleStatus))
	mux.HandleFunc("GET /v1/telemetry", s.guard(viewer, s.handleTelemetry))
	mux.HandleFunc("GET /v1/audit", s.guard(admin, s.handleAudit))
	mux.Handle("GET /ui", ui.Handler()) // the mesh view: a static page; its data calls are guarded
	s.identityRoutes(mux)
	if s.inject != nil {
		// Unauthenticated by design: the answer is a patch computed from the
		// request alone (control/kube/inject).
		mux.Handle("POST /inject", s.inject)
	}
	return mux
}

// ErrorBody is every error answer: a message and, for a refused change,
// each problem with its resource and field.
type ErrorBody struct {
	Error    string         `json:"error"`
	Problems []ProblemEntry `json:"problems,omitempty"`
}

// ProblemEntry is one validation problem.
type ProblemEntry struct {
	Resource string `json:"resource"`
	Field    string `json:"field,omitempty"`
	Reason   string `json:"reason"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
}

// WriteResult answers an accepted change.
type WriteResult struct {
	Revision  int64            `json:"revision"`
	Changed   []string         `json:"changed"`
	Resources []*mesh.Resource `json:"resources,omitempty"`
	// Warnings are what mesh.Warnings finds in the mesh now in force:
	// accepted, but worth a look.
	Warnings []string `json:"warnings,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, ErrorBody{Error: msg})
}

// writeStoreError maps a refused change to its status: 409 for a conflict,
// 404 for a missing resource, 422 for an invalid mesh, 503 when the store
// cannot commit (etcd without a quorum), 413 for a change too big for one
// etcd transaction.
func writeStoreError(w http.ResponseWriter, err error) {
	var ce *store.ConflictError
	var nf *store.NotFoundError
	var me mesh.Errors
	var ue *store.UnavailableError
	var tb *store.TooBigError
	switch {
	case errors.As(err, &tb):
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.As(err, &ue):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case errors.As(err, &ce):
		writeError(w, http.StatusConflict, err.Error())
	case errors.As(err, &nf):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.As(err, &me):
		b := ErrorBody{Error: "change refused; nothing changed:\n" + me.Error()}
		for _, e := range me {
			b.Problems = append(b.Problems, ProblemEntry{Resource: e.Key.String(), Field: e.Field, Reason: e.Reason, File: e.File, Line: e.Line})
		}
		writeJSON(w, http.StatusUnprocessableEntity, b)
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// wantsYAML reports whether the client asked for YAML (Accept or ?format).
func wantsYAML(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "yaml"
	}
	return strings.Contains(r.Header.Get("Accept"), "yaml")
}

func writeResources(w http.ResponseWriter, r *http.Request, status int, rs []*mesh.Resource) {
	if wantsYAML(r) {
		b, err := mesh.Encode(rs)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.WriteHeader(status)
		_, _ = w.Write(b)
		return
	}
	if rs == nil {
		rs = []*mesh.Resource{}
	}
	writeJSON(w, status, rs)
}

// withOwner is a shallow copy of the stored resource showing its owner.
func withOwner(o store.Object) *mesh.Resource {
	r := *o.Resource
	r.Owner = o.Owner()
	return &r
}

// who names the authenticated caller for the audit log.
func who(r *http.Request) string { return callerOf(r).String() }

func pathKey(r *http.Request) (mesh.Key, error) {
	k, err := mesh.ParseKind(r.PathValue("kind"))
	if err != nil {
		return mesh.Key{}, err
	}
	return mesh.Key{Kind: k, Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}, nil
}

// ifMatch reads the If-Match header as a resource_version (0 = none).
func ifMatch(r *http.Request) (int64, error) {
	v := strings.Trim(strings.TrimPrefix(r.Header.Get("If-Match"), "W/"), `"`)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("If-Match: %q is not a resource_version", v)
	}
	return n, nil
}

func readResources(w http.ResponseWriter, r *http.Request) ([]*mesh.Resource, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "reading body: "+err.Error())
		return nil, false
	}
	rs, err := mesh.Decode("request body", b)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return nil, false
	}
	if len(rs) == 0 {
		writeError(w, http.StatusBadRequest, "the body holds no resource")
		return nil, false
	}
	return rs, true
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	var kind mesh.Kind
	if ks := r.PathValue("kind"); ks != "" {
		k, err := mesh.ParseKind(ks)
		if err != nil {
			writeError(w, http.StatusNotFound, err.Error())
			return
		}
		kind = k
	}
	var rs []*mesh.Resource
	for _, o := range s.store.List(kind) {
		rs = append(rs, withOwner(o))
	}
	writeResources(w, r, http.StatusOK, rs)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	k, err := pathKey(r)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	o, ok := s.store.Get(k)
	if !ok {
		writeError(w, http.StatusNotFound, (&store.NotFoundError{Key: k}).Error())
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(o.Resource.ResourceVersion, 10)))
	w.Header().Set("X-Weft-Source", o.Source)
	w.Header().Set("X-Weft-Owner", o.Owner())
	if wantsYAML(r) {
		writeResources(w, r, http.StatusOK, []*mesh.Resource{withOwner(o)})
		return
	}
	writeJSON(w, http.StatusOK, withOwner(o))
}

func (s *Server) write(w http.ResponseWriter, r *http.Request, status int, c store.Change) {
	c.Who, c.Source = who(r), store.SourceAPI
	if err := s.resolveModules(r.Context(), c.Puts); err != nil {
		writeStoreError(w, err)
		return
	}
	res, err := s.store.Apply(c)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	out := WriteResult{Revision: res.Revision, Changed: []string{}}
	for _, k := range res.Changed {
		out.Changed = append(out.Changed, k.String())
	}
	for _, p := range c.Puts {
		if o, ok := s.store.Get(p.Key()); ok {
			out.Resources = append(out.Resources, o.Resource)
		}
	}
	for _, e := range mesh.Warnings(s.store.Mesh()) {
		out.Warnings = append(out.Warnings, e.Error())
		s.log.Warn("mesh warning", zap.String("warning", e.Error()))
	}
	writeJSON(w, status, out)
}

// handleCreate creates the resources in the body; any that exists makes
// the whole request a 409.
func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	rs, ok := readResources(w, r)
	if !ok {
		return
	}
	s.write(w, r, http.StatusCreated, store.Change{Action: "create", Puts: rs, CreateOnly: true})
}

// handleApply creates or replaces the resources in the body, atomically.
func (s *Server) handleApply(w http.ResponseWriter, r *http.Request) {
	rs, ok := readResources(w, r)
	if !ok {
		return
	}
	s.write(w, r, http.StatusOK, store.Change{Action: "apply", Puts: rs})
}

// handleReplace creates or replaces one resource. If-Match (or the body's
// resource_version) makes it conditional: a stale version is a 409.
func (s *Server) handleReplace(w http.ResponseWriter, r *http.Request) {
	k, err := pathKey(r)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	rs, ok := readResources(w, r)
	if !ok {
		return
	}
	if len(rs) != 1 {
		writeError(w, http.StatusBadRequest, "PUT takes one resource; use POST /v1/apply for several")
		return
	}
	res := rs[0]
	if res.Key() != k {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("the body is %s but the path names %s", res.Key(), k))
		return
	}
	im, err := ifMatch(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if im != 0 {
		if res.ResourceVersion != 0 && res.ResourceVersion != im {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("If-Match says %d but the body's resource_version is %d", im, res.ResourceVersion))
			return
		}
		res.ResourceVersion = im
	}
	s.write(w, r, http.StatusOK, store.Change{Action: "replace", Puts: rs})
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	k, err := pathKey(r)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	im, err := ifMatch(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.write(w, r, http.StatusOK, store.Change{Action: "delete", Deletes: []store.Delete{{Key: k, ResourceVersion: im}}})
}

func (s *Server) handleModuleUpload(w http.ResponseWriter, r *http.Request) {
	m, err := s.reg.Put(http.MaxBytesReader(w, r.Body, registry.MaxModuleBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.audit != nil {
		_ = s.audit.Write(store.AuditEntry{Who: who(r), Source: store.SourceAPI, Action: "module-upload", Resources: []string{"Module " + m.SHA256}, Revision: s.store.Revision(), Result: "applied"})
	}
	writeJSON(w, http.StatusCreated, m)
}

func (s *Server) handleModuleList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.reg.List())
}

func (s *Server) handleModuleGet(w http.ResponseWriter, r *http.Request) {
	d := r.PathValue("sha256")
	f, err := s.reg.Open(d)
	if err != nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("module %s: %v", d, err))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/wasm")
	w.Header().Set("ETag", strconv.Quote(d))
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// Status is the answer of GET /v1/status.
type Status struct {
	Revision   int64              `json:"revision"`
	Nodes      []NodeStatus       `json:"nodes"`
	FileSource *filesource.Status `json:"file_source,omitempty"`
	// KubeSource is the Kubernetes source's last sync (weft control
	// -kubeconfig).
	KubeSource *kube.Status `json:"kube_source,omitempty"`
	Modules    int          `json:"modules"`
	// Warnings are mesh.Warnings of the mesh in force, whichever source
	// wrote it.
	Warnings []string `json:"warnings,omitempty"`
	// Store is where the mesh is kept, and whether this replica is behind.
	Store store.BackendStatus `json:"store"`
	// ModuleRefusals are the last Filter modules this replica refused to
	// pull or admit (an unreachable registry, a bad signature), newest
	// last; each refused write kept the mesh in force.
	ModuleRefusals []ModuleRefusal `json:"module_refusals,omitempty"`
}

// ModuleRefusal is one Filter module the control plane would not admit.
type ModuleRefusal struct {
	At     time.Time `json:"at"`
	Filter string    `json:"filter"`
	Ref    string    `json:"ref"`
	Field  string    `json:"field"`
	Reason string    `json:"reason"`
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	st := Status{Revision: s.store.Revision(), Nodes: s.status(), Modules: len(s.reg.List()), Store: s.store.Status(), ModuleRefusals: s.moduleRefusals()}
	if st.Nodes == nil {
		st.Nodes = []NodeStatus{}
	}
	for _, e := range mesh.Warnings(s.store.Mesh()) {
		st.Warnings = append(st.Warnings, e.Error())
	}
	if s.files != nil {
		fs := s.files.Status()
		st.FileSource = &fs
	}
	if s.kube != nil {
		ks := s.kube.Status()
		st.KubeSource = &ks
	}
	if wantsYAML(r) {
		b, _ := yaml.Marshal(st)
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(b)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// handleAudit answers the last ?limit=N (default 100) audit entries,
// oldest first: every replica's with -store etcd://, else this one's.
func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) {
	n := 100
	if l := r.URL.Query().Get("limit"); l != "" {
		v, err := strconv.Atoi(l)
		if err != nil || v < 1 || v > store.MaxAuditRead {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: want a number of entries from 1 to %d", store.MaxAuditRead))
			return
		}
		n = v
	}
	es, err := s.audit.Read(r.Context(), n)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, es)
}

func (s *Server) handleTelemetry(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Telemetry())
}
