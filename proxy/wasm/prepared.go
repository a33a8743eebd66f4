package wasm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weftmesh/weft/proxy/wasm/dataimage"
	"github.com/weftmesh/weft/proxy/wasm/interrupt"
	"go.uber.org/zap"
)

// preparedModule is a module as this host compiles it.
type preparedModule struct {
	code []byte
	// image is the initial memory its data segments make, taken out of
	// code (package dataimage); nil when code keeps them.
	image []byte
	// interruptible: code carries the interrupt flag (package interrupt).
	interruptible bool
}

// prepare returns module as this host compiles it: rewritten with its
// interrupt flag unless trusted (a module the rewrite cannot decode keeps
// wazero's termination checks), and with its data segments taken out as a
// shared image where this platform maps one. Both passes decode the whole
// module: tens of milliseconds for a Go guest, seconds under the race
// detector, paid at every load that names the module, a config-only
// reload included. With a cache dir the result is kept on disk beside the
// compiled code, keyed by the module's digest and the versions of both
// passes, so a reload or restart with a module seen before reads it back.
func (rt *Runtime) prepare(name string, module []byte, trusted bool) preparedModule {
	key := preparedKey(module, trusted)
	if p, ok := rt.readPrepared(key); ok {
		if !trusted && !p.interruptible {
			rt.log.Info("wasm plugin: using wazero's termination checks (the module could not be rewritten)", zap.String("plugin", name))
		}
		return p
	}
	rt.preparations.Add(1)
	p := preparedModule{code: module}
	if !trusted {
		if c, err := interrupt.Instrument(module); err == nil {
			p.code, p.interruptible = c, true
		} else {
			rt.log.Info("wasm plugin: using wazero's termination checks", zap.String("plugin", name), zap.Error(err))
		}
	}
	if imagesSupported {
		if c, img, ok, _ := dataimage.Split(p.code); ok {
			p.code, p.image = c, img
		}
	}
	rt.writePrepared(key, p)
	return p
}

// preparedKey names a prepared module: what goes in and what makes it.
func preparedKey(module []byte, trusted bool) [32]byte {
	h := sha256.New()
	iv, dv := interrupt.Version(), dataimage.Version()
	h.Write(iv[:])
	h.Write(dv[:])
	flags := []byte{0, 0}
	if trusted {
		flags[0] = 1
	}
	if imagesSupported {
		flags[1] = 1
	}
	h.Write(flags)
	h.Write(module)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// preparedMagic starts a prepared module's file; a file is
// magic, a flags byte, the code's and the image's lengths (uint64 little
// endian), the code, the image, and the SHA-256 of everything before it.
const preparedMagic = "weft-prepared-1\n"

func (rt *Runtime) preparedPath(key [32]byte) string {
	if rt.dir == "" {
		return ""
	}
	return filepath.Join(rt.dir, "weft-prepared", hex.EncodeToString(key[:]))
}

// readPrepared reads a prepared module back; a file that is missing,
// truncated or altered is ignored (and prepared again).
func (rt *Runtime) readPrepared(key [32]byte) (preparedModule, bool) {
	path := rt.preparedPath(key)
	if path == "" {
		return preparedModule{}, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return preparedModule{}, false
	}
	p, err := decodePrepared(b)
	if err != nil {
		rt.log.Warn("wasm cache: ignoring a prepared module", zap.String("path", path), zap.Error(err))
		return preparedModule{}, false
	}
	return p, true
}

func decodePrepared(b []byte) (preparedModule, error) {
	const head = len(preparedMagic) + 1 + 16
	if len(b) < head+sha256.Size || string(b[:len(preparedMagic)]) != preparedMagic {
		return preparedModule{}, errors.New("not a prepared module")
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if s := sha256.Sum256(body); !bytes.Equal(s[:], sum) {
		return preparedModule{}, errors.New("checksum mismatch")
	}
	flags := body[len(preparedMagic)]
	codeLen := binary.LittleEndian.Uint64(body[len(preparedMagic)+1:])
	imageLen := binary.LittleEndian.Uint64(body[len(preparedMagic)+9:])
	rest := body[head:]
	if codeLen > uint64(len(rest)) || imageLen != uint64(len(rest))-codeLen || flags&^3 != 0 {
		return preparedModule{}, errors.New("bad lengths or flags")
	}
	p := preparedModule{code: rest[:codeLen:codeLen], interruptible: flags&1 != 0}
	if flags&2 != 0 {
		p.image = rest[codeLen:]
	} else if imageLen != 0 {
		return preparedModule{}, errors.New("an image without its flag")
	}
	return p, nil
}

func encodePrepared(p preparedModule) []byte {
	b := make([]byte, 0, len(preparedMagic)+17+len(p.code)+len(p.image)+sha256.Size)
	b = append(b, preparedMagic...)
	var flags byte
	if p.interruptible {
		flags |= 1
	}
	if p.image != nil {
		flags |= 2
	}
	b = append(b, flags)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(p.code)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(p.image)))
	b = append(b, p.code...)
	b = append(b, p.image...)
	s := sha256.Sum256(b)
	return append(b, s[:]...)
}

// writePrepared keeps p on disk (written whole, then renamed into place);
// failing to is logged, not an error: the next load prepares it again.
func (rt *Runtime) writePrepared(key [32]byte, p preparedModule) {
	path := rt.preparedPath(key)
	if path == "" {
		return
	}
	err := os.MkdirAll(filepath.Dir(path), 0o700)
	if err == nil {
		var f *os.File
		if f, err = os.CreateTemp(filepath.Dir(path), ".tmp-*"); err == nil {
			_, err = f.Write(encodePrepared(p))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Rename(f.Name(), path)
			}
			if err != nil {
				_ = os.Remove(f.Name())
			}
		}
	}
	if err != nil {
		rt.log.Warn("wasm cache: could not keep a prepared module", zap.String("path", path), zap.Error(err))
	}
}

// Precompile prepares and compiles spec's module as Load does, without
// starting a VM: with a cache dir, a later Load of the module, in this
// process or another, reads both back instead of making them.
func (rt *Runtime) Precompile(ctx context.Context, spec PluginSpec) error {
	spec = spec.withDefaults()
	if len(spec.Module) == 0 {
		return fmt.Errorf("wasm plugin %q: module is empty", spec.Name)
	}
	prep := rt.prepare(spec.Name, spec.Module, spec.Trusted)
	e, err := rt.engineFor(ctx, spec.MemoryLimitPages, spec.Trusted, prep.interruptible)
	if err != nil {
		return fmt.Errorf("wasm plugin %q: %w", spec.Name, err)
	}
	_, _, sum, err := e.compile(ctx, prep.code, prep.image)
	if err != nil {
		return fmt.Errorf("wasm plugin %q: compile: %w", spec.Name, err)
	}
	e.release(sum)
	return nil
}
