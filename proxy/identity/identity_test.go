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

// TestIDCharacterClasses checks each end of every character range a SPIFFE
// ID allows, and the character just outside it: trust domains are lower
// case, paths may also use upper case.
func TestIDCharacterClasses(t *testing.T) {
	cases := []struct {
		id string
		ok bool
	}{
		{"spiffe://a/x", true},
		{"spiffe://z/x", true},
		{"spiffe://0/x", true},
		{"spiffe://9/x", true},
		{"spiffe://a.b-c_d/x", true},
		{"spiffe://`/x", false}, // just before 'a'
		{"spiffe://{/x", false}, // just after 'z'
		{"spiffe://A/x", false},
		{"spiffe://Z/x", false},
		{"spiffe://@/x", false},
		{"spiffe://[/x", false},
		{"spiffe://!/x", false},
		{"spiffe://td/a", true},
		{"spiffe://td/z", true},
		{"spiffe://td/A", true},
		{"spiffe://td/Z", true},
		{"spiffe://td/0", true},
		{"spiffe://td/9", true},
		{"spiffe://td/.a-_", true},
		{"spiffe://td/`", false},
		{"spiffe://td/{", false},
		{"spiffe://td/@", false}, // just before 'A'
		{"spiffe://td/[", false}, // just after 'Z'
		{"spiffe://td/:", false}, // just after '9'
		{"spiffe://td/x y", false},
	}
	for _, c := range cases {
		_, _, err := ParseID(c.id)
		if (err == nil) != c.ok {
			t.Errorf("ParseID(%q): err %v, want ok=%v", c.id, err, c.ok)
		}
	}
}

// TestMatchPatternNeedsAWorkload: a namespace pattern matches IDs under
// it, not the bare prefix.
func TestMatchPatternNeedsAWorkload(t *testing.T) {
	cases := []struct {
		pat, id string
		want    bool
	}{
		{"spiffe://td/ns/pay/*", "spiffe://td/ns/pay/", false},
		{"spiffe://td/ns/pay/*", "spiffe://td/ns/pay/x", true},
	}
	for _, c := range cases {
		if got := MatchPattern(c.pat, c.id); got != c.want {
			t.Errorf("MatchPattern(%q, %q) = %v, want %v", c.pat, c.id, got, c.want)
		}
	}
}
