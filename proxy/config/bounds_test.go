package config

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// boundsDoc is a valid config with the values under test in it.
func boundsDoc(status, upstreamPort, authz, listenerTLS string) string {
	return `listeners:
  - name: l
    address: 127.0.0.1:0
    tls: ` + listenerTLS + `
    authz: ` + authz + `
    virtual_hosts:
      - name: v
        domains: ["*"]
        routes: [{direct_response: {status: ` + status + `}}]
clusters:
  - name: c
    endpoints: [{address: "127.0.0.1:` + upstreamPort + `"}]
    connect_timeout: 0s
`
}

// TestValuesAtTheirBounds: the first and last value a range allows are
// accepted, the ones just outside are refused.
func TestValuesAtTheirBounds(t *testing.T) {
	const allowAll = `{default: allow}`
	const mesh = `{mode: strict}`
	for _, tc := range []struct {
		name                           string
		status, port, authz, tls, want string // want "" for accepted
	}{
		{"lowest status", "100", "1", allowAll, mesh, ""},
		{"highest status", "599", "65535", allowAll, mesh, ""},
		{"status under", "99", "80", allowAll, mesh, "status 99 is not between 100 and 599"},
		{"status over", "600", "80", allowAll, mesh, "status 600 is not between 100 and 599"},
		{"upstream port over", "200", "65536", allowAll, mesh, `port "65536" is not a number from 1 to 65535`},
		{"upstream port zero", "200", "0", allowAll, mesh, `port "0" is not a number from 1 to 65535`},
		{"authz ports at the ends", "200", "80", `{default: deny, rules: [{name: r, action: allow, ports: [1, 65535]}]}`, mesh, ""},
		{"authz port over", "200", "80", `{rules: [{name: r, action: allow, ports: [65536]}]}`, mesh, "port 65536 is not a number from 1 to 65535"},
		{"authz port zero", "200", "80", `{rules: [{name: r, action: allow, ports: [0]}]}`, mesh, "port 0 is not a number from 1 to 65535"},
		{"all three TLS files", "200", "80", allowAll, `{mode: strict, cert_file: c.pem, key_file: k.pem, ca_file: ca.pem}`, ""},
		{"two TLS files", "200", "80", allowAll, `{mode: strict, cert_file: c.pem, key_file: k.pem}`, "set all of cert_file, key_file, ca_file, or none"},
		{"principal header", "200", "80", `{request_principal_header: "x peer"}`, mesh, `header name "x peer" has characters a header name cannot have`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("b.yaml", []byte(boundsDoc(tc.status, tc.port, tc.authz, tc.tls)))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestPrincipalTrustDomainCharacters: a trust domain holds lower-case
// letters, digits, '.', '-' and '_', and nothing else.
func TestPrincipalTrustDomainCharacters(t *testing.T) {
	for _, ok := range []string{"*", "spiffe://az09.-_/ns/a/sa/b", "spiffe://a/*", "spiffe://z"} {
		if err := checkPrincipal(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	// The characters just outside each allowed range, and others.
	for _, td := range []string{"`", "{", "/", ":", "A", "Z", "a b", "a+b", "a@b", "é"} {
		p := "spiffe://" + td + "/x"
		if td == "/" {
			p = "spiffe:///x"
		}
		if err := checkPrincipal(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

// TestRawConfigKeepsStringsAndEncodesTheRest: a plugin's YAML config is
// passed as the string written, or as JSON when it is any other value.
func TestRawConfigKeepsStringsAndEncodesTheRest(t *testing.T) {
	for doc, want := range map[string]string{
		`c: text`:           "text",
		`c: "0x10"`:         "0x10",
		`c: '5'`:            "5",
		`c: 0x10`:           "16",
		`c: !!int "0x10"`:   "0x10",
		`c: {a: 1}`:         `{"a":1}`,
		"c:\n  a: [1, two]": `{"a":[1,"two"]}`,
		`c: [x]`:            `["x"]`,
		`c: true`:           "true",
		"c: |\n  line\n":    "line\n",
	} {
		var v struct {
			C RawConfig `yaml:"c"`
		}
		if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
			t.Errorf("%q: %v", doc, err)
			continue
		}
		if string(v.C) != want {
			t.Errorf("%q: config %q, want %q", doc, v.C, want)
		}
	}
}

func TestZeroDurationIsAllowed(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 0s"), &v); err != nil || v.D != 0 {
		t.Errorf("0s: %v, %v", v.D, err)
	}
	if err := yaml.Unmarshal([]byte("d: -1ns"), &v); err == nil {
		t.Error("a negative duration was accepted")
	}
}

// TestProblemsOnOneLineKeepTheirOrder: problems come sorted by line, and
// those on one line in the order the fields are checked (Validate and
// Parse alike).
func TestProblemsOnOneLineKeepTheirOrder(t *testing.T) {
	doc := `clusters:
  - {name: c3, lb: bogus}
listeners:
  - name: l
    address: 127.0.0.1:0
    virtual_hosts: [{name: v, domains: ['*'], routes: [{direct_response: {status: 99}}, {direct_response: {status: 600}}]}]
`
	want := []string{
		"2 clusters[0].endpoints",
		"2 clusters[0].lb",
		"6 listeners[0].virtual_hosts[0].routes[0].direct_response.status",
		"6 listeners[0].virtual_hosts[0].routes[1].direct_response.status",
	}
	lines := func(err error) []string {
		var es Errors
		if !errors.As(err, &es) {
			t.Fatalf("not Errors: %v", err)
		}
		var out []string
		for _, e := range es {
			out = append(out, strconv.Itoa(e.Line)+" "+e.Path)
		}
		return out
	}
	_, err := Parse("o.yaml", []byte(doc))
	if got := lines(err); !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	var c Config
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	if got := lines(Validate("o.yaml", []byte(doc), &c)); !reflect.DeepEqual(got, want) {
		t.Errorf("Validate:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
