package httpheader

import (
	"net/http"
	"testing"
)

// CanonicalKey answers what net/http does, for the frequent names (in
// either case) and for any other.
func TestCanonicalKeyIsNetHTTPs(t *testing.T) {
	for _, name := range []string{
		"content-type", "Content-Type", "content-length", "grpc-status", "Grpc-Message", "grpc-timeout",
		"grpc-encoding", "grpc-accept-encoding", "te", "user-agent", "accept", "accept-encoding", "date",
		"Server", "x-request-id", "X-B3-TRACEID", "grpc-status-details-bin", "bad name", "",
	} {
		want := http.CanonicalHeaderKey(name)
		if got := CanonicalKey(name); got != want {
			t.Errorf("CanonicalKey(%q) = %q, want %q", name, got, want)
		}
		if got := CanonicalKeyBytes([]byte(name)); got != want {
			t.Errorf("CanonicalKeyBytes(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestCanonicalKeyFrequentNamesDoNotAllocate(t *testing.T) {
	b := []byte("grpc-status")
	if n := testing.AllocsPerRun(100, func() {
		_ = CanonicalKey("content-type")
		_ = CanonicalKeyBytes(b)
	}); n != 0 {
		t.Fatalf("%v allocations for frequent names", n)
	}
}

func FuzzCanonicalKey(f *testing.F) {
	for _, s := range []string{"content-type", "Grpc-Status", "x-a", "a b", "TE"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		want := http.CanonicalHeaderKey(name)
		if got := CanonicalKey(name); got != want {
			t.Fatalf("CanonicalKey(%q) = %q, want %q", name, got, want)
		}
		if got := CanonicalKeyBytes([]byte(name)); got != want {
			t.Fatalf("CanonicalKeyBytes(%q) = %q, want %q", name, got, want)
		}
	})
}
