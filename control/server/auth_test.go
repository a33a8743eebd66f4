package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsersFile(t *testing.T) {
	digest := strings.Repeat("ab", 32)
	for _, c := range []struct{ name, text, want string }{
		{"ok", "# ops\nalice editor sha256:" + digest + "  # a token\n\nbob admin cert\n", ""},
		{"fields", "alice editor\n", ":1: want NAME ROLE sha256:HEX or NAME ROLE cert, got 2 fields"},
		{"role", "alice root cert\n", `:1: role: "root" is not viewer, editor or admin`},
		{"plaintext token", "alice editor wot_secret\n", `:1: credential: "wot_secret" is neither sha256:HEX nor cert`},
		{"short digest", "alice editor sha256:abcd\n", ":1: token: want sha256: and 64 hex digits"},
		{"twice", "alice viewer cert\nalice admin cert\n", `:2: name: "alice" is given twice`},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users")
			if err := os.WriteFile(path, []byte(c.text), 0o600); err != nil {
				t.Fatal(err)
			}
			us, err := loadUsers(path)
			if c.want == "" {
				if err != nil || len(us) != 2 || us[0].role != RoleEditor || us[0].digest != digest || !us[1].cert || us[1].role != RoleAdmin {
					t.Fatalf("%v %+v", err, us)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), path+c.want) {
				t.Fatalf("got %v, want %q", err, path+c.want)
			}
		})
	}
}
