//go:build !linux

package cluster

import "net"

const spliceOK = false

func (b *h1Body[C]) splice(src, dst *net.TCPConn, tick func()) (int64, error) {
	panic("unreachable: splice is Linux only")
}
