package server

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/store"
	"github.com/weftmesh/weft/control/telemetry"
)

// WatchResponse is a snapshot sent to a sidecar.
type WatchResponse struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	// Config is the sidecar config: JSON when Format is "json"
	// (config.ParseJSON reads it, and so does config.Parse, JSON being
	// YAML), else YAML.
	Config string `json:"config"`
	Format string `json:"format,omitempty"`
}

// watchBody is a snapshot's watch answer, encoded once per snapshot
// however many times it is sent.
func watchBody(snap *store.Snapshot) []byte {
	b, err := json.Marshal(WatchResponse{Node: snap.Node, Version: snap.Version, Config: string(snap.Body), Format: "json"})
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	return append(b, '\n')
}

// ConfigMediaType is the watch answer a sidecar asks for with Accept: the
// config itself as the body (JSON, version stamped in), with the node and
// version in the X-Weft-Node and X-Weft-Version headers. A sidecar then
// reads the config as it arrives instead of unquoting it from a
// WatchResponse first, and the control plane writes the snapshot's body
// as compiled, with nothing encoded per answer. A sidecar that does not
// ask gets a WatchResponse.
const ConfigMediaType = "application/vnd.weft.config+json"

// Ack is a sidecar's answer to a snapshot: Error is empty for an ACK.
type Ack struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	Error   string `json:"error,omitempty"`
}

// Nack is the last snapshot a sidecar refused.
type Nack struct {
	Version string    `json:"version"`
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
}

// NodeStatus is what the control plane knows of one sidecar.
type NodeStatus struct {
	Node    string `json:"node"`
	Service string `json:"service,omitempty"`
	// Declared is false for a sidecar that watches but has no Sidecar
	// resource (it waits for one).
	Declared bool `json:"declared"`
	// Desired is the version compiled for the node; Applied the version
	// the sidecar last ACKed (in force there); InSync when they are equal.
	Desired  string    `json:"desired_version,omitempty"`
	Applied  string    `json:"applied_version,omitempty"`
	InSync   bool      `json:"in_sync"`
	LastAck  time.Time `json:"last_ack,omitzero"`
	LastNack *Nack     `json:"last_nack,omitempty"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	// Watching is true while a watch request from the sidecar is open.
	Watching bool   `json:"watching"`
	Admin    string `json:"admin,omitempty"`
}

type tracker struct {
	mu    sync.Mutex
	nodes map[string]*nodeState
}

type nodeState struct {
	NodeStatus
	open int
}

func newTracker() *tracker { return &tracker{nodes: map[string]*nodeState{}} }

func (t *tracker) get(node string) *nodeState {
	n := t.nodes[node]
	if n == nil {
		n = &nodeState{NodeStatus: NodeStatus{Node: node}}
		t.nodes[node] = n
	}
	return n
}

// watching records a watch request opening (delta 1) or closing (-1).
// applied is the version the sidecar says is in force: its ACK of the
// snapshot it applied since its last watch (sidecars send it instead of
// POST /v1/ack), and after a control plane restart what status shows at
// the sidecar's first watch.
func (t *tracker) watching(node, admin, applied string, delta int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.get(node)
	n.open += delta
	n.LastSeen = time.Now().UTC()
	if admin != "" {
		n.Admin = admin
	}
	if applied != "" && n.Applied != applied {
		n.Applied = applied
		n.LastAck = n.LastSeen
	}
}

func (t *tracker) ack(a Ack) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.get(a.Node)
	n.LastSeen = time.Now().UTC()
	if a.Error == "" {
		n.Applied = a.Version
		n.LastAck = n.LastSeen
		return
	}
	n.LastNack = &Nack{Version: a.Version, Error: a.Error, At: n.LastSeen}
}

// targets lists the sidecars that reported an admin address.
func (t *tracker) targets() []telemetry.Target {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []telemetry.Target
	for _, n := range t.nodes {
		if n.Admin != "" {
			out = append(out, telemetry.Target{Node: n.Node, Admin: n.Admin})
		}
	}
	return out
}

// status merges what sidecars said with what the store wants for them.
func (s *Server) status() []NodeStatus {
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	seen := map[string]bool{}
	var out []NodeStatus
	for _, snap := range s.store.Nodes() {
		seen[snap.Node] = true
		ns := NodeStatus{Node: snap.Node}
		if n := s.nodes.nodes[snap.Node]; n != nil {
			ns = n.NodeStatus
			ns.Watching = n.open > 0
		}
		ns.Declared, ns.Service, ns.Desired = true, snap.Service, snap.Version
		ns.InSync = ns.Applied == ns.Desired
		out = append(out, ns)
	}
	for id, n := range s.nodes.nodes {
		if !seen[id] {
			ns := n.NodeStatus
			ns.Watching = n.open > 0
			out = append(out, ns)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// handleWatch is a long poll: it answers at once with the node's snapshot
// when its version differs from the one the sidecar has, else waits for a
// change until the wait (default WatchTimeout) ends and answers 204.
//
// Long polling rather than a stream: every answer is a whole snapshot, so
// there is no framing, no partial state and nothing to resume; a sidecar's
// reconnect is simply its next poll; it passes through any HTTP proxy; and
// the ACK travels on its own request, which keeps both directions plain
// request/response over net/http.
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	node := q.Get("node")
	if node == "" {
		writeError(w, http.StatusBadRequest, "node is required: /v1/watch?node=ID&version=V")
		return
	}
	if !s.checkNode(w, r, node) {
		return
	}
	have := q.Get("version")
	wait := s.o.WatchTimeout
	if ws := q.Get("wait"); ws != "" {
		d, err := time.ParseDuration(ws)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, "wait: want a duration such as 30s")
			return
		}
		wait = min(d, MaxWatchTimeout)
	}
	raw := accepts(r, ConfigMediaType)
	s.nodes.watching(node, q.Get("admin"), q.Get("applied"), 1)
	defer s.nodes.watching(node, "", "", -1)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		changed := s.store.Changed() // before reading, so no change is missed
		if snap := s.store.Node(node); snap != nil && snap.Version != have {
			h := w.Header()
			h.Set("Cache-Control", "no-store")
			body := snap.Body
			if raw {
				h.Set("Content-Type", ConfigMediaType)
				h.Set("X-Weft-Node", snap.Node)
				h.Set("X-Weft-Version", snap.Version)
			} else {
				h.Set("Content-Type", "application/json")
				body = snap.Encoded(watchBody)
			}
			// Known length: one write, not chunks (a config is over
			// net/http's 2 KB chunking threshold), and no chunk parsing
			// on the sidecar.
			h.Set("Content-Length", strconv.Itoa(len(body)))
			if _, err := w.Write(body); err != nil {
				s.log.Debug("watch: writing snapshot", zap.String("node", node), zap.Error(err))
			}
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			w.WriteHeader(http.StatusNoContent)
			return
		case <-s.closing:
			w.WriteHeader(http.StatusNoContent)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// accepts reports whether the request's Accept header lists mediaType.
func accepts(r *http.Request, mediaType string) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, mt := range strings.Split(v, ",") {
			mt, _, _ = strings.Cut(mt, ";")
			if strings.EqualFold(strings.TrimSpace(mt), mediaType) {
				return true
			}
		}
	}
	return false
}

func (s *Server) handleAck(w http.ResponseWriter, r *http.Request) {
	var a Ack
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&a); err != nil {
		writeError(w, http.StatusBadRequest, "ack: want JSON {node, version, error}: "+err.Error())
		return
	}
	if a.Node == "" || a.Version == "" {
		writeError(w, http.StatusBadRequest, "ack: node and version are required")
		return
	}
	if !s.checkNode(w, r, a.Node) {
		return
	}
	s.nodes.ack(a)
	if a.Error != "" {
		s.log.Warn("sidecar refused a snapshot (NACK)", zap.String("node", a.Node), zap.String("version", a.Version), zap.String("error", a.Error))
	} else {
		s.log.Debug("sidecar applied a snapshot", zap.String("node", a.Node), zap.String("version", a.Version))
	}
	w.WriteHeader(http.StatusNoContent)
}
