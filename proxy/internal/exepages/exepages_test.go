//go:build linux

package exepages

import (
	"reflect"
	"strings"
	"testing"
)

const smapsFixture = `00400000-02538000 r-xp 00000000 fe:00 123 /opt/weft/bin/weft
Size:              34016 kB
Rss:               17660 kB
Anonymous:             0 kB
02539000-04d6b000 r--p 02139000 fe:00 123 /opt/weft/bin/weft
Size:              41160 kB
Rss:               22000 kB
Anonymous:             0 kB
04d6b000-04e87000 rw-p 0496b000 fe:00 123 /opt/weft/bin/weft
Size:               1136 kB
Rss:                 952 kB
Anonymous:           200 kB
04e88000-04e89000 r--p 04988000 fe:00 123 /opt/weft/bin/weft
Size:                  4 kB
Rss:                   4 kB
Anonymous:             4 kB
7f0000000000-7f0000800000 r-xp 00000000 00:00 0 
Size:               8192 kB
Rss:                8192 kB
Anonymous:          8192 kB
7f0000900000-7f0000a00000 r-xp 00000000 fe:00 77 /opt/weft/bin/weft-other
Size:               1024 kB
Rss:                 100 kB
Anonymous:             0 kB
7f0000b00000-7f0000c00000 r-xp 00000000 fe:00 79 /opt/weft/bin/weft (deleted)
Size:               1024 kB
Rss:                  64 kB
Anonymous:             0 kB
7f1000000000-7f1000100000 r-xp 00000000 fe:00 78 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 800 kB
Anonymous:             0 kB
`

func TestParseSmaps(t *testing.T) {
	got, err := parseSmaps(strings.NewReader(smapsFixture), "/opt/weft/bin/weft")
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{
		{Start: 0x400000, End: 0x2538000, Executable: true, Resident: 17660 << 10},
		{Start: 0x2539000, End: 0x4d6b000, Resident: 22000 << 10},
		// Read-only now, written before (relocated data): kept with its
		// private bytes, which Drop refuses to give back.
		{Start: 0x4e88000, End: 0x4e89000, Resident: 4 << 10, Private: 4 << 10},
		// The executable replaced on disk while it runs.
		{Start: 0x7f0000b00000, End: 0x7f0000c00000, Executable: true, Resident: 64 << 10},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseSmaps:\n got %+v\nwant %+v", got, want)
	}
}

// TestDrop gives back this test binary's code and read-only data and
// checks they were resident before and fewer are after (the code that
// reads smaps afterwards maps some back).
func TestDrop(t *testing.T) {
	before := resident(t)
	if before == 0 {
		t.Fatal("no resident page of the executable before Drop")
	}
	res, err := Drop()
	if err != nil {
		t.Fatal(err)
	}
	if res.Mappings == 0 || res.Resident == 0 {
		t.Fatalf("Drop gave back nothing: %+v", res)
	}
	after := resident(t)
	t.Logf("resident before %d KiB, given back %d KiB in %d mappings, resident after %d KiB", before>>10, res.Resident>>10, res.Mappings, after>>10)
	if after >= before {
		t.Fatalf("resident pages of the executable: %d KiB after Drop, %d KiB before", after>>10, before>>10)
	}
	// Everything still runs: code given back is mapped again on use.
	if s := strings.Repeat("ok", 2); s != "okok" {
		t.Fatal(s)
	}
}

func resident(t *testing.T) int64 {
	t.Helper()
	maps, err := Mappings()
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) == 0 {
		t.Fatal("no read-only mapping of the executable in /proc/self/smaps")
	}
	var n int64
	for _, m := range maps {
		n += m.Resident
	}
	return n
}
