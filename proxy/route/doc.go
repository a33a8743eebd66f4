// Package route owns the compiled route table: one listener's virtual hosts
// and routes turned, once per config snapshot, into an immutable Table that
// matches a fasthttp request without allocating, and the per-route actions
// that follow a match (weighted cluster pick, mirror sampling, path/host
// rewrites, header mutations, redirects and direct responses).
//
// It must not do I/O, hold locks, log, or know about clusters beyond the
// index the caller gives it: sending the request, retries and filters belong
// to the packages that call it. A Table is never changed after Compile; a
// new config compiles a new Table.
package route
