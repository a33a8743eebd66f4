package store

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	Time time.Time `json:"time"`
	// Who made the change: the X-Weft-User header, or "file".
	Who    string `json:"who"`
	Source string `json:"source"`
	Action string `json:"action"`
	// Resources are the keys written or deleted ("Kind namespace/name").
	Resources []string `json:"resources"`
	// Revision is the store revision after the change (the one in force
	// when a change is refused).
	Revision int64 `json:"revision"`
	// Result is "applied" or "refused"; Error says why a change was refused.
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

// Audit appends JSON lines to a file. It never rewrites or truncates it.
type Audit struct {
	mu sync.Mutex
	f  *os.File
}

// OpenAudit opens (or creates) path for appending.
func OpenAudit(path string) (*Audit, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return &Audit{f: f}, nil
}

// Write appends e as one line (its Time set now when zero) and syncs.
func (a *Audit) Write(e AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return a.f.Sync()
}

// Close closes the file.
func (a *Audit) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}
