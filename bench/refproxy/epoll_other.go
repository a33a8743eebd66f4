//go:build !linux

package refproxy

import (
	"context"
	"errors"
	"net"
)

func serveEpoll(context.Context, string, string, func(net.Addr)) error {
	return errors.New("refproxy: the epoll reference proxy runs on Linux only")
}
