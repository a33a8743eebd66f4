// Command auth is Weft's authentication filter: JWT (HS256, RS256, ES256)
// with inline or fetched JWKS, and static API keys. See README.md.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o auth.wasm ./plugins/auth
//
// It owns checking credentials and turning them into identity headers. It
// must not log tokens or API keys, trust identity headers sent by the
// client, or reach any cluster other than the configured JWKS one.
package main
