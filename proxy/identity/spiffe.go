package identity

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Scheme is the URI scheme of SPIFFE IDs.
const Scheme = "spiffe"

// WorkloadID formats the SPIFFE ID of a workload:
// spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT.
func WorkloadID(trustDomain, namespace, serviceAccount string) string {
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}

// ParseID checks that s is a SPIFFE ID (spiffe://trust-domain/path, with a
// lower-case trust domain of letters, digits, '.', '-', '_', and no query,
// fragment, port or user) and returns its trust domain and path.
func ParseID(s string) (trustDomain, path string, err error) {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return "", "", fmt.Errorf("spiffe id %q: must start with spiffe://", s)
	}
	td, path, _ := strings.Cut(rest, "/")
	if err := CheckTrustDomain(td); err != nil {
		return "", "", fmt.Errorf("spiffe id %q: %w", s, err)
	}
	if path != "" {
		path = "/" + path
		for _, seg := range strings.Split(path[1:], "/") {
			if seg == "" || seg == "." || seg == ".." {
				return "", "", fmt.Errorf("spiffe id %q: empty, \".\" or \"..\" path segment", s)
			}
			for i := 0; i < len(seg); i++ {
				if !pathChar(seg[i]) {
					return "", "", fmt.Errorf("spiffe id %q: character %q is not allowed in a path", s, seg[i])
				}
			}
		}
	}
	return td, path, nil
}

// CheckTrustDomain checks a trust domain name.
func CheckTrustDomain(td string) error {
	if td == "" {
		return errors.New("trust domain is empty")
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q: character %q is not allowed (lower-case letters, digits, '.', '-', '_')", td, c)
		}
	}
	return nil
}

func pathChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
}

// URIOf returns the SPIFFE ID as a URL (for certificate URI SANs).
func URIOf(id string) (*url.URL, error) {
	if _, _, err := ParseID(id); err != nil {
		return nil, err
	}
	return url.Parse(id)
}

// CheckPattern checks a principal pattern: a SPIFFE ID, a SPIFFE ID prefix
// ending in "/*" (spiffe://td/ns/payments/* matches every workload of that
// namespace), or "*" (any authenticated peer).
func CheckPattern(p string) error {
	if p == "*" {
		return nil
	}
	if base, ok := strings.CutSuffix(p, "/*"); ok {
		p = base
	}
	_, _, err := ParseID(p)
	return err
}

// MatchPattern reports whether id matches a pattern CheckPattern accepts.
// The empty id (no peer identity) matches nothing, not even "*".
func MatchPattern(pattern, id string) bool {
	if id == "" {
		return false
	}
	if pattern == "*" {
		return true
	}
	if n := len(pattern); n >= 2 && pattern[n-2:] == "/*" {
		base := pattern[:n-1] // keep the slash
		return len(id) > len(base) && id[:len(base)] == base
	}
	return id == pattern
}
