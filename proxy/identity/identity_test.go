package identity

import "testing"

func TestParseAndMatch(t *testing.T) {
	for _, ok := range []string{"spiffe://td", "spiffe://weft.local/ns/a/sa/b", "spiffe://a-b_c.d/x.y"} {
		if _, _, err := ParseID(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "http://td/x", "spiffe://", "spiffe://TD/x", "spiffe://td/a//b", "spiffe://td/a/../b", "spiffe://td/a?b", "spiffe://td:80/a", "spiffe://td/a/"} {
		if _, _, err := ParseID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	cases := []struct {
		pat, id string
		want    bool
	}{
		{"spiffe://td/ns/pay/*", "spiffe://td/ns/pay/sa/api", true},
		{"spiffe://td/ns/pay/*", "spiffe://td/ns/pay", false},
		{"spiffe://td/ns/pay/*", "spiffe://td/ns/payments/sa/api", false},
		{"spiffe://td/ns/pay/sa/api", "spiffe://td/ns/pay/sa/api", true},
		{"spiffe://td/ns/pay/sa/api", "spiffe://td/ns/pay/sa/api2", false},
		{"*", "spiffe://td/x", true},
		{"*", "", false},
	}
	for _, c := range cases {
		if got := MatchPattern(c.pat, c.id); got != c.want {
			t.Errorf("MatchPattern(%q, %q) = %v", c.pat, c.id, got)
		}
	}
	if WorkloadID("td", "ns1", "sa1") != "spiffe://td/ns/ns1/sa/sa1" {
		t.Error("WorkloadID")
	}
}
