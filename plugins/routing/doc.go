// Command routing is Weft's version-routing filter: it picks a backend
// version for each request — by header, by cookie, or by a percentage
// split (canary, A/B), optionally sticky on a hashed user key — and writes
// it into a request header that the route table matches. See README.md.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o routing.wasm ./plugins/routing
//
// It owns choosing a version and writing it into a header. It must not pick
// clusters or endpoints itself: the route table does that from the header.
package main
