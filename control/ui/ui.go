package ui

import (
	_ "embed"
	"net/http"
)

//go:embed mesh.html
var page []byte

// Handler serves the mesh view page.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(page)
	})
}
