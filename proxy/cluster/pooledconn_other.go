//go:build !linux

package cluster

// idleCheck: peerGone cannot look at the socket here.
const idleCheck = false

// idlePeek is Linux only.
type idlePeek struct{}

// peerGone cannot look at the socket here: a stale connection is found
// by the request's failure (the retry in doH1) instead.
func (cc *countedConn) peerGone(isTLS bool) bool { return false }
