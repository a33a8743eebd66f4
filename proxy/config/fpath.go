package config

import "strconv"

// fpath is a field path as the validator walks a config, e.g.
// listeners[0].virtual_hosts[1].routes[2].route.cluster, kept as its parts
// and made into text (String) only when a problem is reported: checking a
// valid config builds no path at all. It is a value, copied as it is
// extended, so it allocates nothing and a copy outlives its callee safely.
type fpath struct {
	n    int
	segs [fpathSegs]fpathSeg
}

// fpathSegs is deeper than any path the validator walks (the deepest,
// a route's header matcher's name, has 6 parts); deeper ones still work,
// by folding the parts so far into one.
const fpathSegs = 8

// fpathSeg is one part: text as written (".name", ".limits.max_body_bytes",
// "clusters") followed by "[index]" when index ≥ 0.
type fpathSeg struct {
	text  string
	index int
}

// field is the top-level path name, e.g. "listeners".
func field(name string) fpath { return fpath{}.f(name) }

// rootAt is the top-level path name[i], e.g. "clusters[3]".
func rootAt(name string, i int) fpath { return fpath{}.at(name, i) }

// f is p followed by text, e.g. p.f(".name").
func (p fpath) f(text string) fpath { return p.push(fpathSeg{text, -1}) }

// at is p followed by text[i], e.g. p.at(".endpoints", 0).
func (p fpath) at(text string, i int) fpath { return p.push(fpathSeg{text, i}) }

func (p fpath) push(s fpathSeg) fpath {
	if p.n == len(p.segs) {
		p = fpath{n: 1, segs: [fpathSegs]fpathSeg{{p.String(), -1}}}
	}
	p.segs[p.n] = s
	p.n++
	return p
}

// String is the path as errors show it.
func (p fpath) String() string {
	size := 0
	for _, s := range p.segs[:p.n] {
		size += len(s.text)
		if s.index >= 0 {
			size += 2 + 20
		}
	}
	b := make([]byte, 0, size)
	for _, s := range p.segs[:p.n] {
		b = append(b, s.text...)
		if s.index >= 0 {
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(s.index), 10)
			b = append(b, ']')
		}
	}
	return string(b)
}
