package identity

import "testing"

// TestCheckPattern: "*", a SPIFFE ID and an ID prefix ending in "/*" are
// patterns; anything else is refused, so that a policy cannot name peers
// no certificate can carry.
func TestCheckPattern(t *testing.T) {
	for _, ok := range []string{"*", "spiffe://td/ns/a/sa/b", "spiffe://td/ns/a/*", "spiffe://td/*"} {
		if err := CheckPattern(ok); err != nil {
			t.Errorf("CheckPattern(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "**", "/*", "orders", "spiffe://", "spiffe://td/ns/*/sa/b", "https://td/ns/a/sa/b", "spiffe://TD/ns/a"} {
		if err := CheckPattern(bad); err == nil {
			t.Errorf("CheckPattern(%q) accepted", bad)
		}
	}
}
