package wasm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/weftmesh/weft/proxy/config"
)

// Defaults applied to a PluginSpec's zero values.
const (
	DefaultMemoryLimitPages = 1024 // 64 MiB
	// DefaultCallbackTimeout bounds one call into a guest. A no-op Go
	// filter's callback takes microseconds; the watchdog charges a guest
	// only CPU it can have used, not time it waited in a host function or
	// for a CPU (deadline.go), so a busy machine is not taken for a
	// runaway guest.
	DefaultCallbackTimeout = 50 * time.Millisecond
	// DefaultStartTimeout is the least a VM's start (_initialize,
	// on_vm_start, on_configure) gets: twenty callback deadlines, at least
	// this.
	DefaultStartTimeout = 10 * time.Second
	DefaultMaxBodyBytes = 1 << 20
	// PauseTimeout bounds how long a paused stream waits for the guest to
	// resume it before it fails by the plugin's policy.
	PauseTimeout = 30 * time.Second
)

// DefaultPoolSize is a plugin's VM count when its config sets none: one
// fewer than GOMAXPROCS, at least one. Calls into a VM are serialised, so
// the pool size bounds how many of the plugin's guest calls run at once; a
// plugin whose guest spins on every request (until each call's deadline)
// then leaves a core to everything else (issue 18 §4). A default pool
// starts with one VM and adds the others as streams contend (GrowPool):
// an idle Go guest's VM is 1.0–1.3 MiB of PSS, 1.9–2.5 MiB of RSS.
func DefaultPoolSize() int {
	return max(1, runtime.GOMAXPROCS(0)-1)
}

// PluginSpec is one plugin compiled from config.
type PluginSpec struct {
	Name, RootID, VMID     string
	Module                 []byte
	VMConfig, PluginConfig []byte
	FailOpen               bool          // default fail closed
	PoolSize               int           // 0 = DefaultPoolSize()
	MemoryLimitPages       uint32        // 0 = 1024 (64 MiB)
	CallbackTimeout        time.Duration // 0 = 50ms
	MaxBodyBytes           int           // 0 = 1 MiB
	// Trusted drops the callback deadline: the module is compiled without
	// wazero's termination checks and calls skip the watcher wazero starts
	// per call, which makes every callback several times cheaper, but a
	// guest stuck in a loop then holds its VM for good. For filters you
	// wrote or audited.
	Trusted bool
	// ShareVMs lets the plugin run in the VMs of other plugins that share
	// them and agree on VMID, Module, VMConfig, PoolSize, MemoryLimitPages,
	// CallbackTimeout and Trusted, each with its own root context, as
	// Envoy shares a VM between plugins of one vm_config (group.go).
	ShareVMs bool
	// LogLevel is the lowest Proxy-Wasm log level of the guest lines that
	// are written and what proxy_get_log_level answers: one of
	// config.GuestLogLevels, "" for info.
	LogLevel string
	// PluginName, when set, is the plugin's name as the guest sees it (the
	// plugin_name property and the Envoy log prefix; "" is unnamed);
	// nil: Name.
	PluginName *string
	// GrowPool starts the pool with one VM and builds the others, up to
	// PoolSize, one each time a stream has to wait for a busy VM
	// (lockQueued), or when no VM is left (Plugin.pick). Set
	// when PoolSize is defaulted; a pool_size from the config is built
	// whole at load.
	GrowPool bool
}

// guestName is the plugin's name as the guest sees it.
func (s PluginSpec) guestName() string {
	if s.PluginName != nil {
		return *s.PluginName
	}
	return s.Name
}

// withDefaults returns s with its zero values replaced by the defaults.
func (s PluginSpec) withDefaults() PluginSpec {
	if s.PoolSize <= 0 {
		s.PoolSize, s.GrowPool = DefaultPoolSize(), true
	}
	if s.MemoryLimitPages == 0 {
		s.MemoryLimitPages = DefaultMemoryLimitPages
	}
	if s.MemoryLimitPages > 65536 {
		s.MemoryLimitPages = 65536
	}
	if s.CallbackTimeout <= 0 {
		s.CallbackTimeout = DefaultCallbackTimeout
	}
	if s.MaxBodyBytes <= 0 {
		s.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return s
}

// Key digests everything in s (with defaults applied): equal keys mean a
// reload may keep the plugin loaded from s running.
func (s PluginSpec) Key() string {
	h := sha256.New()
	mod := sha256.Sum256(s.Module)
	h.Write(mod[:])
	for _, f := range [][]byte{[]byte(s.Name), []byte(s.RootID), []byte(s.VMID), s.VMConfig, s.PluginConfig} {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	fmt.Fprintf(h, "|%t|%d|%d|%d|%d|%t|%t|%q", s.FailOpen, s.PoolSize, s.MemoryLimitPages, s.CallbackTimeout, s.MaxBodyBytes, s.Trusted, s.ShareVMs, s.LogLevel)
	fmt.Fprintf(h, "|%t|%q|%t", s.PluginName != nil, s.guestName(), s.GrowPool)
	return hex.EncodeToString(h.Sum(nil))
}

// SpecFromConfig reads f.Module (path relative to baseDir, or URL fetched and
// verified against SHA256), and fills a PluginSpec with the config's values
// and defaults. Errors name the filter and field. A module by oci is pulled
// by the caller (it owns the registry cache), then given to SpecWithModule.
func SpecFromConfig(f config.Filter, baseDir string) (PluginSpec, error) {
	var mod []byte
	var err error
	switch {
	case f.Module.OCI != "":
		return PluginSpec{}, fmt.Errorf("filter %q: module.oci: pulled by the proxy, not here", f.Name)
	case f.Module.Path != "" && f.Module.URL != "":
		return PluginSpec{}, fmt.Errorf("filter %q: module: set path or url, not both", f.Name)
	case f.Module.Path != "":
		p := f.Module.Path
		if !filepath.IsAbs(p) {
			p = filepath.Join(baseDir, p)
		}
		if mod, err = os.ReadFile(p); err != nil {
			return PluginSpec{}, fmt.Errorf("filter %q: module.path: %w", f.Name, err)
		}
	case f.Module.URL != "":
		if f.Module.SHA256 == "" {
			return PluginSpec{}, fmt.Errorf("filter %q: module.sha256: required with module.url", f.Name)
		}
		if mod, err = fetchModule(f.Module.URL); err != nil {
			return PluginSpec{}, fmt.Errorf("filter %q: module.url: %w", f.Name, err)
		}
	default:
		return PluginSpec{}, fmt.Errorf("filter %q: module: set path or url", f.Name)
	}
	return SpecWithModule(f, mod)
}

// SpecWithModule fills a PluginSpec from f's values and defaults around a
// module already read, checked against f.Module.SHA256 when that is set.
func SpecWithModule(f config.Filter, module []byte) (PluginSpec, error) {
	var s PluginSpec
	s.Name, s.RootID, s.VMID = f.Name, f.RootID, f.VMID
	if f.PluginName != nil {
		name := *f.PluginName
		s.PluginName = &name
	}
	s.VMConfig, s.PluginConfig = []byte(f.VMConfig), []byte(f.Config)
	switch f.FailurePolicy {
	case "", "fail_closed":
	case "fail_open":
		s.FailOpen = true
	default:
		return s, fmt.Errorf("filter %q: failure_policy: %q is not fail_open or fail_closed", f.Name, f.FailurePolicy)
	}
	if f.PoolSize < 0 {
		return s, fmt.Errorf("filter %q: pool_size: %d is negative", f.Name, f.PoolSize)
	}
	s.PoolSize = f.PoolSize
	if f.MemoryLimitMiB < 0 || f.MemoryLimitMiB > 4096 {
		return s, fmt.Errorf("filter %q: memory_limit_mib: %d is outside 0..4096", f.Name, f.MemoryLimitMiB)
	}
	s.MemoryLimitPages = uint32(f.MemoryLimitMiB) * 16 // 64 KiB pages
	s.CallbackTimeout = f.CallbackTimeout.D()
	s.Trusted = f.Trusted
	s.ShareVMs = !f.IsolateVM
	if _, ok := guestLogLevelNamed(f.LogLevel); !ok {
		return s, fmt.Errorf("filter %q: log_level: %q is not one of %s", f.Name, f.LogLevel, strings.Join(config.GuestLogLevels, ", "))
	}
	s.LogLevel = f.LogLevel
	if f.MaxBodyBytes < 0 {
		return s, fmt.Errorf("filter %q: max_body_bytes: %d is negative", f.Name, f.MaxBodyBytes)
	}
	s.MaxBodyBytes = f.MaxBodyBytes
	s.Module = module
	if want := strings.ToLower(strings.TrimPrefix(f.Module.SHA256, "sha256:")); want != "" {
		got := sha256.Sum256(s.Module)
		if hex.EncodeToString(got[:]) != want {
			return s, fmt.Errorf("filter %q: module.sha256: module digest is %x, config says %s", f.Name, got, want)
		}
	}
	return s.withDefaults(), nil
}

// maxModuleBytes bounds a fetched module.
const maxModuleBytes = 256 << 20

func fetchModule(url string) ([]byte, error) {
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxModuleBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if len(b) > maxModuleBytes {
		return nil, fmt.Errorf("GET %s: module larger than %d bytes", url, maxModuleBytes)
	}
	return b, nil
}
