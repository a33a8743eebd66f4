package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// namesField reports whether err's message starts with one of fields
// and a colon.
func namesField(err error, fields ...string) bool {
	for _, f := range fields {
		if strings.HasPrefix(err.Error(), f+": ") {
			return true
		}
	}
	return false
}

// FuzzIdentityRequests decodes arbitrary bodies as join token and
// certificate requests (the decoders of POST /v1/tokens and
// /v1/certificate, without HTTP): a refused body gets an error naming the
// field at fault (or the body), an accepted one has what the handlers
// rely on, and re-encoding an accepted request decodes to the same one.
func FuzzIdentityRequests(f *testing.F) {
	for _, body := range []string{
		`{"node":"n1"}`, `{"node":"n1","ttl":"1h","uses":3}`, `{"node":"n1","ttl":"1ms"}`, `{"node":"n1","ttl":"abc"}`,
		`{"node":"n1","uses":-1}`, `{"node":""}`, `{}`, ``, `nope`, `{"node":1}`, `{"node":"n1","uses":"x"}`,
		`{"node":"n1","csr":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"}`,
		`{"node":"n1","csr":""}`, `{"node":"n1","csr":7}`, `[{"node":"n1"}]`, `{"node":"n1"} trailing`, `null`,
		`{"node":"n1","ttl":"9999999999999999999h"}`, `{"node":"n1","uses":1e400}`,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, ttl, err := decodeTokenRequest(bytes.NewReader(body))
		if err != nil {
			if !namesField(err, "body", "node", "ttl", "uses") {
				t.Fatalf("token request %q refused without naming a field: %v", body, err)
			}
		} else {
			if req.Node == "" {
				t.Fatalf("token request %q accepted without a node", body)
			}
			if req.TTL != "" {
				if d, err := time.ParseDuration(req.TTL); err != nil || d != ttl {
					t.Fatalf("token request %q: ttl %v from %q", body, ttl, req.TTL)
				}
			} else if ttl != 0 {
				t.Fatalf("token request %q: ttl %v without one", body, ttl)
			}
			again, _ := json.Marshal(req)
			req2, ttl2, err := decodeTokenRequest(bytes.NewReader(again))
			if err != nil || req2 != req || ttl2 != ttl {
				t.Fatalf("token request %q re-encoded as %s decodes to %+v %v %v", body, again, req2, ttl2, err)
			}
		}

		creq, err := decodeCertificateRequest(bytes.NewReader(body))
		if err != nil {
			if !namesField(err, "body", "node", "csr") {
				t.Fatalf("certificate request %q refused without naming a field: %v", body, err)
			}
			return
		}
		if creq.Node == "" || creq.CSR == "" {
			t.Fatalf("certificate request %q accepted as %+v", body, creq)
		}
		again, _ := json.Marshal(creq)
		if creq2, err := decodeCertificateRequest(bytes.NewReader(again)); err != nil || creq2 != creq {
			t.Fatalf("certificate request %q re-encoded as %s decodes to %+v %v", body, again, creq2, err)
		}
	})
}
