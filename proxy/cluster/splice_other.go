//go:build !linux

package cluster

import "net"

const spliceOK = false

// kpipe is Linux only; elsewhere nothing is spliced (spliceOK).
type kpipe struct{ open bool }

func (p *kpipe) openPipe(src, dst *net.TCPConn) error { panic("unreachable: splice is Linux only") }
func (p *kpipe) close()                               {}
func (p *kpipe) move(src, dst *net.TCPConn, n int64, before func()) (int64, int64, error) {
	panic("unreachable: splice is Linux only")
}

func (b *h1Body[C]) splice(src, dst *net.TCPConn, tick func()) (int64, error) {
	panic("unreachable: splice is Linux only")
}
