package cluster

import (
	"fmt"
	"net"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// hashOn is the compiled hash_on: what HashKey reads from a request.
type hashOn struct {
	Kind uint8 // hashNone, hashHeader, hashCookie, hashSourceIP
	Name string
}

const (
	hashNone uint8 = iota
	hashHeader
	hashCookie
	hashSourceIP
)

func compileHashOn(h config.HashOn) (hashOn, error) {
	set := 0
	var out hashOn
	if h.Header != "" {
		set++
		out = hashOn{Kind: hashHeader, Name: h.Header}
	}
	if h.Cookie != "" {
		set++
		out = hashOn{Kind: hashCookie, Name: h.Cookie}
	}
	if h.SourceIP {
		set++
		out = hashOn{Kind: hashSourceIP}
	}
	if set != 1 {
		return hashOn{}, fmt.Errorf("set exactly one of header, cookie, source_ip (%d set)", set)
	}
	return out, nil
}

// HashKey computes the ring-hash key of req per the cluster's hash_on: a
// header's value, a cookie's value, or the source IP (src). ok is false
// when the cluster does not use ring_hash, has no hash_on, or the request
// has no such value; Pick then chooses at random. HashKey does not
// allocate.
func (c *Cluster) HashKey(req *fasthttp.Request, src net.Addr) (key uint64, ok bool) {
	var b []byte
	switch c.hashOn.Kind {
	case hashHeader:
		b = req.Header.Peek(c.hashOn.Name)
	case hashCookie:
		b = req.Header.Cookie(c.hashOn.Name)
	case hashSourceIP:
		var ip net.IP
		switch a := src.(type) {
		case *net.TCPAddr:
			ip = a.IP
		case *net.UDPAddr:
			ip = a.IP
		case *net.IPAddr:
			ip = a.IP
		}
		if ip4 := ip.To4(); ip4 != nil {
			ip = ip4
		}
		b = ip
	default:
		return 0, false
	}
	if len(b) == 0 {
		return 0, false
	}
	return hash64(b), true
}

// hash64 is 64-bit FNV-1a followed by the murmur3 finalizer, which spreads
// FNV's weak low bits over the whole ring. It is stable across processes,
// so every sidecar maps a key to the same endpoint.
func hash64(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
