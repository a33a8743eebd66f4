package cluster

import (
	"io"
	"testing"
	"time"
)

// Where a streamed body's read deadline is set (h1Body.Read): each read
// pushes it before it waits, whatever the connection's reader holds, since
// a part of a size line or CRLF there still needs the socket.

// An upstream whose first chunk-size line comes in part with the headers
// (the reader holds "1") and then stalls is cut at the idle timeout: the
// body was made with no read deadline and the reader was not empty, so a
// read that pushes only when the reader is empty would wait for ever.
func TestDoStreamStallInHeldSizeLineIsIdle(t *testing.T) {
	_, e, gate := spliceCluster(t, 300*time.Millisecond, []string{chunkedHead + "1", "0\r\nx\r\n0\r\n\r\n"})
	rb, _ := streamGet(t, e, "/held", nil)
	t.Cleanup(func() { _ = rb.Close() })
	read := make(chan error, 1)
	go func() {
		_, err := rb.Read(make([]byte, 64))
		read <- err
	}()
	select {
	case err := <-read:
		if err != ErrBodyIdle {
			t.Fatalf("a body stalled in its first size line: %v, want ErrBodyIdle", err)
		}
	case <-time.After(30 * time.Second): // a safety net, not a measurement
		t.Fatal("a body stalled in its first size line was not cut at the idle timeout")
	}
	gate <- struct{}{} // the rest comes now: too late
	if n, err := rb.Read(make([]byte, 64)); n != 0 || err != ErrBodyIdle {
		t.Fatalf("a read after the idle timeout: %d, %v", n, err)
	}
}

// A consumer (the proxy's client) that pauses longer than the idle
// timeout between two reads, while the reader holds part of the next
// size line and the upstream has sent the rest: the next read pushes the
// deadline before it reads the socket, and the body arrives whole. A
// deadline left from before the pause has passed by then (the pause is
// counted from after the first read returned), and Go refuses a read
// past its deadline even with bytes waiting: such a read would be cut
// with ErrBodyIdle although the upstream never paused.
func TestDoStreamConsumerPauseNotCut(t *testing.T) {
	const idle = 300 * time.Millisecond
	_, e, gate := spliceCluster(t, idle, []string{chunkedHead, "5\r\nhello\r\n5\r", "\nworld\r\n0\r\n\r\n"})
	rb, _ := streamGet(t, e, "/pause", nil)
	t.Cleanup(func() { _ = rb.Close() })
	gate <- struct{}{}
	p := make([]byte, 64)
	n, err := rb.Read(p)
	first := time.Now()
	if err != nil || string(p[:n]) != "hello" {
		t.Fatalf("first read: %q, %v; want hello", p[:n], err)
	}
	gate <- struct{}{}
	// The consumer's pause: the scenario itself, not a wait for a
	// condition. Any deadline the first read set has passed after it.
	<-time.After(time.Until(first.Add(idle * 3 / 2)))
	rest, err := io.ReadAll(rb)
	if err != nil || string(rest) != "world" {
		t.Fatalf("after the consumer's pause: %q, %v; want world and io.EOF", rest, err)
	}
}

// The read path (not spliced) gives each wait on the upstream its own idle
// bound, as the spliced one does (TestSpliceChunksEachWaitHasItsOwnDeadline):
// a size line, a CRLF or the trailers sent a piece at a time, each pause
// shorter than the idle timeout and all of them longer, arrive whole,
// although one Read waits through several socket reads for them.
func TestDoStreamEachWaitHasItsOwnDeadline(t *testing.T) {
	const idle = 2 * time.Second
	const pause = 1100 * time.Millisecond // two are 2.2 s
	for _, tc := range []struct {
		name  string
		parts []string // the first with the headers
		body  string
	}{
		{"size line byte by byte", []string{chunkedHead + "1", "0", "\r", "\n0123456789abcdef\r\n0\r\n\r\n"}, "0123456789abcdef"},
		{"CRLF and next size line", []string{chunkedHead + "5\r\nhello", "\r", "\n5", "\r\nworld\r\n0\r\n\r\n"}, "helloworld"},
		{"trailers", []string{trailerHead + "5\r\nhello\r\n0\r\n", "X-T: v\r\n", "\r\n"}, "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, e, gate := spliceCluster(t, idle, tc.parts)
			rb, resp := streamGet(t, e, "/paced", nil)
			t.Cleanup(func() { _ = rb.Close() })
			releaseEvery(t, gate, len(tc.parts)-1, pause)
			got, err := io.ReadAll(rb)
			if err != nil || string(got) != tc.body {
				t.Fatalf("a paced body read: %q, %v; want %q whole", got, err, tc.body)
			}
			if tc.name == "trailers" && string(resp.Header.Peek("X-T")) != "v" {
				t.Fatalf("trailer X-T %q, want v", resp.Header.Peek("X-T"))
			}
		})
	}
}

// A size line sent a byte at a time that then stalls for longer than the
// idle timeout is still cut (ErrBodyIdle), whatever came before the stall.
func TestDoStreamStallAfterPacedBytesIsIdle(t *testing.T) {
	_, e, gate := spliceCluster(t, 300*time.Millisecond, []string{chunkedHead + "1", "0", "\r\n0123456789abcdef\r\n0\r\n\r\n"})
	rb, _ := streamGet(t, e, "/stall", nil)
	t.Cleanup(func() { _ = rb.Close() })
	read := make(chan error, 1)
	go func() {
		_, err := rb.Read(make([]byte, 64))
		read <- err
	}()
	gate <- struct{}{} // "0", then nothing more
	select {
	case err := <-read:
		if err != ErrBodyIdle {
			t.Fatalf("a body stalled in its size line: %v, want ErrBodyIdle", err)
		}
	case <-time.After(30 * time.Second): // a safety net, not a measurement
		t.Fatal("a body stalled in its size line was not cut at the idle timeout")
	}
}
