package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Zero-copy response bodies. A Content-Length body that no filter reads
// goes from the upstream's socket to the client's without passing through
// weft's memory: on Linux, through a pipe with splice(2), up to 256 KiB per
// call each way (what the HTTP/1.1 path otherwise copies 64 KiB at a time
// through user space). Go's own io.Copy between two *net.TCPConn splices
// too, but cannot tell which side failed; this copy can, so an upstream
// that breaks mid-body is still told apart from a client that went away.

// Splicer is a ResponseBody that can copy the rest of itself to a TCP
// connection in the kernel.
type Splicer interface {
	// SpliceTo copies the rest of the body to dst. ok is false when it
	// cannot (a chunked or close-delimited body, a TLS upstream, a short
	// body, another OS): nothing was read then, and the caller copies the
	// body itself. tick is called before each step, to push dst's write
	// deadline ahead. An error is the upstream's (as Read's) unless it is
	// a *WriteError, dst's.
	SpliceTo(dst *net.TCPConn, tick func()) (n int64, ok bool, err error)
}

// WriteError is a write to the client that failed during SpliceTo.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return "writing the response body: " + e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// IsWriteError reports whether err is a WriteError.
func IsWriteError(err error) bool {
	var we *WriteError
	return errors.As(err, &we)
}

// SplicedResponseBytes is how many response body bytes went through a
// pipe since the process started (the tests' evidence that a splice path
// ran).
func SplicedResponseBytes() int64 { return splicedResponseBytes.Load() }

var splicedResponseBytes atomic.Int64

// spliceMin is the smallest body spliced: below it a pipe's two
// syscalls and its setup cost more than the copies they save.
const spliceMin = 256 << 10

// upstreamTCP is the plain TCP connection under a pooled upstream
// connection (nil over TLS), for a caller that reads or writes it itself:
// the connection's deadlines are set on it at once from then on (not
// kept lazily: sockio), so they bound the caller's calls.
func upstreamTCP(c net.Conn) *net.TCPConn {
	if cc, ok := c.(*countedConn); ok {
		if cc.sock != nil {
			cc.sock.Settle()
		}
		c = cc.Conn
	}
	tc, _ := c.(*net.TCPConn)
	return tc
}

// SpliceTo is Splicer's for an HTTP/1.1 Content-Length body.
func (b *h1Body[C]) SpliceTo(dst *net.TCPConn, tick func()) (int64, bool, error) {
	if b.eof || b.err != nil || b.chunked || b.cl < 0 || b.left < spliceMin || !spliceOK {
		return 0, false, nil
	}
	src := upstreamTCP(b.cc.Conn())
	if src == nil {
		return 0, false, nil
	}
	var total int64
	// What the reader holds of the body goes first.
	if k := min(b.br.Buffered(), b.left); k > 0 {
		tick()
		p, _ := b.br.Peek(k)
		n, err := dst.Write(p)
		_, _ = b.br.Discard(n)
		b.left -= n
		total += int64(n)
		if err != nil {
			return total, true, &WriteError{Err: err}
		}
	}
	n, err := b.splice(src, dst, tick)
	total += n
	if err != nil && !IsWriteError(err) {
		b.err = err
	}
	return total, true, err
}

// ChunkSplicer is a chunked ResponseBody whose chunks' data can be moved
// to a TCP connection in the kernel.
type ChunkSplicer interface {
	// SpliceChunksTo copies the rest of the body to dst as chunks of the
	// upstream's sizes (size line, data, CRLF), up to its last chunk: the
	// last chunk's line and the trailers, which are then in the response
	// header as after Read's io.EOF, are the caller's to write. A chunk
	// of up to 16 KiB, or one already read whole, is copied with its
	// framing, together with the whole chunks read after it, in one
	// writev; of a larger one, what was read is written with its size
	// line and the rest is spliced. ok, tick and the errors are
	// SpliceTo's.
	SpliceChunksTo(dst *net.TCPConn, tick func()) (n int64, ok bool, err error)
}

// SpliceChunksTo is ChunkSplicer's for an HTTP/1.1 chunked body.
func (b *h1Body[C]) SpliceChunksTo(dst *net.TCPConn, tick func()) (int64, bool, error) {
	if b.eof || b.err != nil || !b.chunked || !spliceOK {
		return 0, false, nil
	}
	src := upstreamTCP(b.cc.Conn())
	if src == nil {
		return 0, false, nil
	}
	var p kpipe
	defer p.close()
	n, err := b.spliceChunks(&p, src, dst, tick)
	if err != nil && !IsWriteError(err) {
		if readTimedOut(err) {
			err = ErrBodyIdle
		}
		b.err = err
	}
	return n, true, err
}

// spliceChunks is SpliceChunksTo's loop. The CRLF that ends a chunk goes
// to dst with the next chunk's size line (or alone before the last chunk),
// so a spliced chunk costs one write and two splices, and the whole chunks
// the reader holds go out together in one writev.
func (b *h1Body[C]) spliceChunks(p *kpipe, src, dst *net.TCPConn, tick func()) (int64, error) {
	var total int64
	owed := false // the previous chunk's CRLF is still to write to dst
	if cap(b.head) < chunkHeadRoom {
		b.head = make([]byte, 0, chunkHeadRoom)
		b.vec = make([][]byte, 0, maxGathered*2)
	}
	// The body is read through a larger reader than the connection's: it
	// takes what that one holds, then reads the socket (capped after a
	// splice, see below), so that nothing of the body is in the
	// connection's reader once it is empty: rd's first fill takes all of
	// it (16 KiB at most, rd has 64). Every read of the socket through rd
	// pushes the read deadline just before it (cappedReader), so none of
	// the reads below (size line, data, CRLF, trailers) sets one itself;
	// a splice step pushes its own (move's before).
	b.capped = cappedReader[C]{pre: b.br, r: b.cc.Conn(), body: b, src: src}
	rd := chunkReaderPool.Get().(*bufio.Reader)
	rd.Reset(&b.capped)
	b.rd = rd
	defer func() {
		rd.Reset(nil)
		chunkReaderPool.Put(rd)
		b.rd = nil
	}()
	for {
		if b.left > 0 {
			// The rest of a large chunk: spliced.
			if !p.open {
				if err := p.openPipe(src, dst); err != nil {
					return total, &WriteError{Err: err}
				}
			}
			_, out, err := p.move(src, dst, int64(b.left), func() { tick(); b.pushReadDeadline(src) })
			b.left -= int(out)
			total += out
			splicedResponseBytes.Add(out)
			if err != nil {
				return total, err
			}
			// The next read brings this chunk's CRLF and the next size
			// line: only a little more, so that a next large chunk's
			// data stays on the socket for the pipe.
			b.capped.max = cappedRead
			if err := readCRLF(rd); err != nil {
				return total, err
			}
			owed = true
			continue
		}
		size, err := readChunkSize(rd)
		if err != nil {
			return total, err
		}
		head := b.head[:0]
		if owed {
			head = append(head, crlf...)
		}
		if size == 0 {
			if owed {
				tick()
				if _, err := dst.Write(head); err != nil {
					return total, &WriteError{Err: err}
				}
			}
			if err := b.h.ReadTrailer(rd); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return total, err
			}
			b.eof = true
			return total, nil
		}
		head = strconv.AppendInt(head, int64(size), 16)
		head = append(head, '\r', '\n')
		if size > chunkCopyMax && size > rd.Buffered() {
			// A large chunk: its size line and what the reader holds of
			// it now, the rest spliced above.
			data, _ := rd.Peek(rd.Buffered())
			b.vec = append(b.vec[:0], head, data)
			n, err := b.writeVec(dst, tick, len(data))
			total += n
			if err != nil {
				return total, err
			}
			b.left = size - len(data)
			continue
		}
		// A small chunk, or one the reader holds: whole, with those after
		// it that the reader holds whole too.
		b.capped.max = 0
		data, err := rd.Peek(size)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return total, err
		}
		b.vec = append(b.vec[:0], head, data)
		held, _ := rd.Peek(rd.Buffered())
		used, k := b.gatherChunks(held[size:], len(head))
		n, err := b.writeVec(dst, tick, size+used)
		total += n - int64(used-k)
		if err != nil {
			return total, err
		}
		if err := readCRLF(rd); err != nil {
			return total, err
		}
		owed = true
	}
}

// chunkReaderPool holds the readers of spliced chunked bodies.
var chunkReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, chunkReadBuffer) }}

const (
	chunkReadBuffer = 64 << 10 // a spliced chunked body's reader
	chunkCopyMax    = 16 << 10 // larger chunks are spliced, less what is read already
	chunkHeadRoom   = 512      // size lines of the chunks one writev gathers
	maxGathered     = 16       // chunks one writev gathers at most
	cappedRead      = 512      // the read after a spliced chunk (see spliceChunks)
)

// chunkHeadRoom holds the size lines of maxGathered chunks, each at most
// 19 bytes (CRLF, the 15 hex digits parseChunkSize takes, CRLF): the
// build fails if it would not, so gatherChunks need not check its room.
const _ = uint(chunkHeadRoom - maxGathered*19)

// gatherChunks appends to b.vec the chunks that follow in held, each whole
// with the CRLF that ends the one before: up to where held ends, a chunk
// is not whole, the last chunk or a malformed line, which the caller then
// reads as usual. It returns how many bytes of held they take (up to the
// CRLF of the last one gathered, not included) and how many of those are
// chunk data.
func (b *h1Body[C]) gatherChunks(held []byte, headLen int) (used, data int) {
	heads := b.head[:headLen] // the first chunk's line is in use
	for len(b.vec) < cap(b.vec) {
		rest := held[used:]
		if len(rest) < 2 || rest[0] != '\r' || rest[1] != '\n' {
			break
		}
		i := bytes.IndexByte(rest[2:], '\n')
		if i < 0 {
			break
		}
		size, err := parseChunkSize(rest[2 : 2+i])
		line := 2 + i + 1
		if err != nil || size == 0 || len(rest) < line+size {
			break
		}
		start := len(heads)
		heads = append(heads, '\r', '\n')
		heads = strconv.AppendInt(heads, int64(size), 16)
		heads = append(heads, '\r', '\n')
		b.vec = append(b.vec, heads[start:], rest[line:line+size])
		used += line + size
		data += size
	}
	return used, data
}

// writeVec writes b.vec to dst in one writev and then drops consumed
// bytes from the reader. It returns the chunk data written: consumed less
// the framing when the write is whole (the caller corrects for framing it
// gathered).
func (b *h1Body[C]) writeVec(dst *net.TCPConn, tick func(), consumed int) (int64, error) {
	tick()
	b.bufs = b.vec
	_, err := b.bufs.WriteTo(dst)
	_, _ = b.rd.Discard(consumed)
	if err != nil {
		return int64(consumed), &WriteError{Err: err}
	}
	return int64(consumed), nil
}

// pushReadDeadline moves src's read deadline ahead as the body's idle
// bound asks, once a tenth of it has gone by.
func (b *h1Body[C]) pushReadDeadline(src *net.TCPConn) {
	if b.idle > 0 {
		if now := time.Now(); now.Sub(b.last) > b.idle/10 {
			b.last = now
			_ = src.SetReadDeadline(now.Add(b.idle))
		}
	}
}
