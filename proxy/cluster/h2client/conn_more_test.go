package h2client

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// tick is half the shortest of the idle, ping and ping-answer times,
// never under 100 ms.
func TestConnTick(t *testing.T) {
	for _, tt := range []struct {
		idle, after, timeout, want time.Duration
	}{
		{10 * time.Second, 4 * time.Second, 6 * time.Second, 2 * time.Second},
		{3 * time.Second, 30 * time.Second, 15 * time.Second, 1500 * time.Millisecond},
		{time.Minute, time.Minute, 400 * time.Millisecond, 200 * time.Millisecond},
		{100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond},
		{time.Millisecond, time.Second, time.Second, 100 * time.Millisecond},
	} {
		c := &conn{t: &Transport{cfg: Config{IdleTimeout: tt.idle, PingAfter: tt.after, PingTimeout: tt.timeout}}}
		if got := c.tick(); got != tt.want {
			t.Errorf("tick with idle %v, ping after %v, ping timeout %v: %v, want %v", tt.idle, tt.after, tt.timeout, got, tt.want)
		}
	}
}

// A connection takes streams up to the server's limit, and none once its
// stream IDs run out (the last client stream ID is 2^31-1), is closed or
// going away.
func TestConnReserveBounds(t *testing.T) {
	c := &conn{maxSlots: 2, nextID: 1}
	if !c.reserve() || !c.reserve() {
		t.Fatal("two slots of two refused")
	}
	if c.reserve() {
		t.Fatal("a third slot of two given")
	}
	for _, tt := range []struct {
		nextID uint32
		ok     bool
	}{{1<<31 - 5, true}, {1<<31 - 3, true}, {1<<31 + 1, false}, {1<<32 - 1, false}} {
		c := &conn{maxSlots: 10, nextID: tt.nextID}
		if got := c.reserve(); got != tt.ok {
			t.Errorf("next stream ID %d: reserve %v, want %v", tt.nextID, got, tt.ok)
		}
	}
	for _, c := range []*conn{{maxSlots: 10, nextID: 1, closed: true}, {maxSlots: 10, nextID: 1, goingAway: true}} {
		if c.reserve() {
			t.Errorf("closed %v, going away %v: a slot given", c.closed, c.goingAway)
		}
	}
}

// A connection is idle from the moment its last stream slot is given
// back, not from an earlier one.
func TestConnIdleSinceLastRelease(t *testing.T) {
	c := &conn{t: New(Config{}), maxSlots: 2, nextID: 1}
	if !c.reserve() || !c.reserve() {
		t.Fatal("two slots of two refused")
	}
	c.release()
	if !c.idleSince.IsZero() {
		t.Fatalf("idle since %v with a stream still open", c.idleSince)
	}
	before := time.Now()
	c.release()
	if c.slots != 0 || c.idleSince.Before(before) {
		t.Fatalf("%d slots, idle since %v: want 0, idle from the last release (%v)", c.slots, c.idleSince, before)
	}
}

// A field value may hold spaces, tabs and any byte from 0x80; control
// characters and DEL are refused.
func TestValidFieldValueBytes(t *testing.T) {
	for _, v := range []string{"a b", "a\tb", " ", "\t", "~", "caf\xc3\xa9", "\x80\xff"} {
		if err := validField([]byte("x"), []byte(v)); err != nil {
			t.Errorf("value %q refused: %v", v, err)
		}
	}
	for _, v := range []string{"\x00", "\x1f", "a\nb", "a\rb", "\x7f", "\x08"} {
		if err := validField([]byte("x"), []byte(v)); err == nil {
			t.Errorf("value %q accepted", v)
		}
	}
}

// A connection interns up to 512 header strings of up to 256 bytes each,
// and hands back the interned string for bytes it has seen.
func TestInternBounds(t *testing.T) {
	c := &conn{}
	long := strings.Repeat("v", 256)
	if c.intern([]byte(long)) != long || len(c.interned) != 1 {
		t.Fatalf("a 256-byte value not interned: %d", len(c.interned))
	}
	if c.intern([]byte(long + "w")); len(c.interned) != 1 {
		t.Fatalf("a 257-byte value interned")
	}
	for i := 0; len(c.interned) < maxInterned; i++ {
		c.intern([]byte(strconv.Itoa(i)))
	}
	if c.intern([]byte("one more")) != "one more" || len(c.interned) != maxInterned {
		t.Fatalf("%d interned, want the bound %d", len(c.interned), maxInterned)
	}
	if s := c.intern([]byte("7")); s != "7" {
		t.Fatalf("interned %q", s)
	}
}

// lower lowers A to Z only, anywhere in the string.
func TestLower(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "abc": "abc", "A": "a", "Z": "z", "xZ": "xz", "X-Request-ID": "x-request-id",
		"@[`{AZ": "@[`{az", "a@Z[": "a@z[", "é": "é",
	} {
		if got := lower(in); got != want {
			t.Errorf("lower(%q) = %q, want %q", in, got, want)
		}
	}
}
