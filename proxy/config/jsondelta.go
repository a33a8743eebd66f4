package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
)

// DeltaParser parses one sidecar's successive JSON configs (the control
// plane's snapshots) as ParseJSON does, decoding only what changed since
// the config it parsed last: a listener, virtual host, route, cluster,
// filter or wasm service whose JSON text is byte for byte the one at the
// same place before is taken from the config before, already decoded and
// defaulted, and so are the fields of a listener, a virtual host, a route,
// a route's action or the config itself when their own text (all but
// their lists) is unchanged. A weight change decodes one route's weighted
// clusters. The whole result is then validated, as
// ParseJSON does, but for the checks of an unchanged cluster on its own.
//
// The result equals ParseJSON(name, data) whatever the input
// (FuzzDeltaParser checks it): text the splitter does not take apart
// plainly — a key in another case or spelled with escapes, a key given
// twice, a null where a list goes — and errors are left to ParseJSON, so
// they read the same. A result shares its unchanged parts with the config
// before; configs are never modified once parsed, so both stay valid.
// The zero DeltaParser is ready; it is not safe for concurrent use.
type DeltaParser struct {
	last *Config
	text *configText // last's text, split; nil: nothing to compare with
}

// Parse parses data; on error the config parsed last stays the base of
// the next.
func (d *DeltaParser) Parse(name string, data []byte) (*Config, error) {
	if d.last != nil && d.text != nil {
		if c, t, ok := d.delta(data); ok {
			if c.Version == "" {
				sum := sha256.Sum256(data)
				c.Version = hex.EncodeToString(sum[:])[:versionHexDigits]
			}
			// A cluster whose text is unchanged passed its own checks
			// in the config before.
			valid := make([]bool, len(t.clusters))
			for i := range valid {
				valid[i] = i < len(d.text.clusters) && bytes.Equal(t.clusters[i], d.text.clusters[i])
			}
			if err := validate(name, data, c, valid); err != nil {
				return nil, err
			}
			d.last, d.text = c, t
			return c, nil
		}
	}
	c, err := ParseJSON(name, data)
	if err != nil {
		return nil, err
	}
	d.last = c
	d.text, _ = (&DeltaParser{}).split(data)
	return c, nil
}

// configText is a config's JSON text taken apart: its own fields (all but
// the version and the lists) and each list's elements.
type configText struct {
	own       []jsonMember
	listeners []*listenerText
	clusters  [][]byte
	filters   [][]byte
	services  [][]byte
}

type listenerText struct {
	whole  []byte
	own    []jsonMember // all but virtual_hosts
	vhosts []*vhostText
}

type vhostText struct {
	whole  []byte
	own    []jsonMember // all but routes
	routes []*routeText
}

type routeText struct {
	whole  []byte
	own    []jsonMember // all but route
	action *actionText  // nil: no route member
}

type actionText struct {
	whole    []byte
	own      []jsonMember // all but weighted_clusters
	weighted []byte       // nil: no weighted_clusters member
}

// configLists are the members of a config decoded apart from its own
// fields, in configText's order.
var configLists = []string{"version", "listeners", "clusters", "filters", "wasm_services"}

// split takes data apart with nothing to reuse (after a full parse), so
// the next Parse has text to compare with.
func (d *DeltaParser) split(data []byte) (*configText, bool) {
	_, t, ok := d.delta(data)
	return t, ok
}

// delta decodes data reusing what is unchanged from d.last (nothing when
// d.last is nil: then it only splits); false: leave it to ParseJSON.
func (d *DeltaParser) delta(data []byte) (*Config, *configText, bool) {
	members, ok := splitObject(data)
	if !ok {
		return nil, nil, false
	}
	vals, own, ok := takeMembers(members, configLists)
	if !ok {
		return nil, nil, false
	}
	prev, pt := d.last, d.text
	if prev == nil || pt == nil {
		prev, pt = &Config{}, &configText{}
	}
	t := &configText{own: own}
	var c Config
	if d.last != nil && d.text != nil && membersEqual(own, pt.own) {
		c = *prev // its own fields; the rest is set below
	} else if d.last != nil {
		if !decodeStrict(joinObject(own), &c) {
			return nil, nil, false
		}
		c.applyOwnDefaults()
	}
	c.Version = ""
	if vals[0] != nil && json.Unmarshal(vals[0], &c.Version) != nil {
		return nil, nil, false
	}
	decoding := d.last != nil
	if c.Listeners, t.listeners, ok = deltaSlice(vals[1], prev.Listeners, pt.listeners, func(lt *listenerText) []byte { return lt.whole },
		func(b []byte, p *Listener, lt *listenerText) (Listener, *listenerText, bool) {
			return decodeListener(b, p, lt, decoding)
		}); !ok {
		return nil, nil, false
	}
	flat := func(b []byte) []byte { return b }
	cluster := func(b []byte, _ *Cluster, _ []byte) (cl Cluster, _ []byte, ok bool) {
		if decoding {
			if ok = decodeStrict(b, &cl); ok {
				cl.applyDefaults()
			}
			return cl, b, ok
		}
		return cl, b, true
	}
	if c.Clusters, t.clusters, ok = deltaSlice(vals[2], prev.Clusters, pt.clusters, flat, cluster); !ok {
		return nil, nil, false
	}
	filter := func(service bool) func([]byte, *Filter, []byte) (Filter, []byte, bool) {
		return func(b []byte, _ *Filter, _ []byte) (f Filter, _ []byte, ok bool) {
			if !decoding {
				return f, b, true
			}
			if ok = decodeStrict(b, &f); ok {
				if service {
					f.applyServiceDefaults()
				} else {
					f.applyDefaults()
				}
			}
			return f, b, ok
		}
	}
	if c.Filters, t.filters, ok = deltaSlice(vals[3], prev.Filters, pt.filters, flat, filter(false)); !ok {
		return nil, nil, false
	}
	if c.WasmServices, t.services, ok = deltaSlice(vals[4], prev.WasmServices, pt.services, flat, filter(true)); !ok {
		return nil, nil, false
	}
	return &c, t, true
}

// decodeListener decodes a listener whose text changed, reusing from prev
// (the listener at the same index before, whose text was pt; nil: none)
// its own fields if their text is unchanged and the virtual hosts whose
// text is. With decoding false it only splits.
func decodeListener(b []byte, prev *Listener, pt *listenerText, decoding bool) (Listener, *listenerText, bool) {
	var l Listener
	members, ok := splitObject(b)
	if !ok {
		return l, nil, false
	}
	vals, own, ok := takeMembers(members, []string{"virtual_hosts"})
	if !ok {
		return l, nil, false
	}
	t := &listenerText{whole: b, own: own}
	if prev == nil || pt == nil {
		prev, pt = &Listener{}, &listenerText{}
		if decoding {
			if !decodeStrict(joinObject(own), &l) {
				return l, nil, false
			}
			l.applyOwnDefaults()
		}
	} else if membersEqual(own, pt.own) {
		l = *prev
	} else if decoding {
		if !decodeStrict(joinObject(own), &l) {
			return l, nil, false
		}
		l.applyOwnDefaults()
	}
	l.VirtualHosts, t.vhosts, ok = deltaSlice(vals[0], prev.VirtualHosts, pt.vhosts, func(vt *vhostText) []byte { return vt.whole },
		func(b []byte, p *VirtualHost, vt *vhostText) (VirtualHost, *vhostText, bool) {
			return decodeVirtualHost(b, p, vt, decoding)
		})
	return l, t, ok
}

// decodeVirtualHost is decodeListener one level down: its own fields, then
// its routes.
func decodeVirtualHost(b []byte, prev *VirtualHost, pt *vhostText, decoding bool) (VirtualHost, *vhostText, bool) {
	var vh VirtualHost
	members, ok := splitObject(b)
	if !ok {
		return vh, nil, false
	}
	vals, own, ok := takeMembers(members, []string{"routes"})
	if !ok {
		return vh, nil, false
	}
	t := &vhostText{whole: b, own: own}
	if prev == nil || pt == nil {
		prev, pt = &VirtualHost{}, &vhostText{}
		if decoding && !decodeStrict(joinObject(own), &vh) {
			return vh, nil, false
		}
	} else if membersEqual(own, pt.own) {
		vh = *prev
	} else if decoding && !decodeStrict(joinObject(own), &vh) {
		return vh, nil, false
	}
	vh.Routes, t.routes, ok = deltaSlice(vals[0], prev.Routes, pt.routes, func(rt *routeText) []byte { return rt.whole },
		func(b []byte, p *Route, rt *routeText) (Route, *routeText, bool) {
			return decodeRoute(b, p, rt, decoding)
		})
	return vh, t, ok
}

// decodeRoute is decodeListener two levels down: a route's own fields,
// then its forwarding action's own fields, then its weighted clusters (a
// weight change decodes those alone).
func decodeRoute(b []byte, prev *Route, pt *routeText, decoding bool) (Route, *routeText, bool) {
	var r Route
	members, ok := splitObject(b)
	if !ok {
		return r, nil, false
	}
	vals, own, ok := takeMembers(members, []string{"route"})
	if !ok {
		return r, nil, false
	}
	t := &routeText{whole: b, own: own}
	if prev != nil && pt != nil && membersEqual(own, pt.own) {
		r = *prev
	} else if decoding {
		if !decodeStrict(joinObject(own), &r) {
			return r, nil, false
		}
		r.applyOwnDefaults()
	}
	r.Route = nil
	if vals[0] == nil {
		return r, t, true
	}
	var prevAction *RouteAction
	var pat *actionText
	if prev != nil && pt != nil && pt.action != nil && prev.Route != nil {
		prevAction, pat = prev.Route, pt.action
		if bytes.Equal(vals[0], pat.whole) {
			r.Route, t.action = prevAction, pat
			return r, t, true
		}
	}
	members, ok = splitObject(vals[0])
	if !ok {
		return r, nil, false
	}
	wvals, aown, ok := takeMembers(members, []string{"weighted_clusters"})
	if !ok {
		return r, nil, false
	}
	t.action = &actionText{whole: vals[0], own: aown, weighted: wvals[0]}
	if !decoding {
		return r, t, true
	}
	var a RouteAction
	if prevAction != nil && membersEqual(aown, pat.own) {
		a = *prevAction
	} else {
		if !decodeStrict(joinObject(aown), &a) {
			return r, nil, false
		}
		a.applyDefaults()
	}
	a.WeightedClusters = nil
	if wvals[0] != nil && !decodeStrict(wvals[0], &a.WeightedClusters) {
		return r, nil, false
	}
	r.Route = &a
	return r, t, true
}

// deltaSlice decodes the JSON array text (nil: the member is absent)
// element by element: element i is prevList[i] when its text is that of
// prevTexts[i]; otherwise decode makes it, given the element before at
// that index when there is one.
func deltaSlice[T, X any](text []byte, prevList []T, prevTexts []X, whole func(X) []byte, decode func(b []byte, prev *T, prevText X) (T, X, bool)) ([]T, []X, bool) {
	if text == nil {
		return nil, nil, true
	}
	elems, ok := splitArray(text)
	if !ok {
		return nil, nil, false
	}
	if len(prevTexts) != len(prevList) {
		prevList, prevTexts = nil, nil
	}
	out := make([]T, len(elems))
	texts := make([]X, len(elems))
	for i, e := range elems {
		var p *T
		var pt X
		if i < len(prevList) {
			if bytes.Equal(e, whole(prevTexts[i])) {
				out[i], texts[i] = prevList[i], prevTexts[i]
				continue
			}
			p, pt = &prevList[i], prevTexts[i]
		}
		if out[i], texts[i], ok = decode(e, p, pt); !ok {
			return nil, nil, false
		}
	}
	return out, texts, true
}

// membersEqual reports whether two member lists are the same text.
func membersEqual(a, b []jsonMember) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].key != b[i].key || !bytes.Equal(a[i].val, b[i].val) {
			return false
		}
	}
	return true
}

// decodeStrict decodes one JSON value into v as ParseJSON does.
func decodeStrict(b []byte, v any) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v) == nil && !dec.More()
}

// jsonMember is one member of a JSON object: its key as written (without
// the quotes) and its value's text.
type jsonMember struct {
	key string
	val []byte
}

// takeMembers picks the members named (exactly) out of members: their
// values by name (nil when absent) and the others. It refuses (false) what
// encoding/json would read differently from a plain split: a key of
// another case or with escapes that could name one of them (encoding/json
// matches keys case-insensitively), a key given twice, and a null value.
func takeMembers(members []jsonMember, names []string) (vals [][]byte, rest []jsonMember, ok bool) {
	vals = make([][]byte, len(names))
	rest = make([]jsonMember, 0, len(members))
	for i, m := range members {
		if strings.IndexByte(m.key, '\\') >= 0 {
			return nil, nil, false
		}
		for _, o := range members[:i] { // a few keys: cheaper than a map
			if strings.EqualFold(o.key, m.key) {
				return nil, nil, false
			}
		}
		taken := false
		for i, n := range names {
			if m.key == n {
				if bytes.Equal(m.val, []byte("null")) {
					return nil, nil, false
				}
				vals[i], taken = m.val, true
			} else if strings.EqualFold(m.key, n) {
				return nil, nil, false
			}
		}
		if !taken {
			rest = append(rest, m)
		}
	}
	return vals, rest, true
}

// joinObject writes members back as one JSON object.
func joinObject(members []jsonMember) []byte {
	n := 2
	for _, m := range members {
		n += len(m.key) + len(m.val) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, m := range members {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, m.key...)
		b = append(b, '"', ':')
		b = append(b, m.val...)
	}
	return append(b, '}')
}

// splitObject splits a JSON object into its members. It checks the
// structure (strings, brackets, commas, colons) strictly and leaves
// scalars to the decoder that reads them; false for anything else,
// trailing text included.
func splitObject(data []byte) ([]jsonMember, bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, false
	}
	out := make([]jsonMember, 0, 8)
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return out, skipSpace(data, i+1) == len(data)
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return nil, false
		}
		end, ok := skipString(data, i)
		if !ok {
			return nil, false
		}
		key := string(data[i+1 : end-1])
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return nil, false
		}
		i = skipSpace(data, i+1)
		vend, ok := skipValue(data, i)
		if !ok {
			return nil, false
		}
		out = append(out, jsonMember{key: key, val: data[i:vend]})
		i = skipSpace(data, vend)
		if i >= len(data) {
			return nil, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return out, skipSpace(data, i+1) == len(data)
		default:
			return nil, false
		}
	}
}

// splitArray splits a JSON array into its elements' text.
func splitArray(data []byte) ([][]byte, bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '[' {
		return nil, false
	}
	var out [][]byte
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		return out, skipSpace(data, i+1) == len(data)
	}
	for {
		end, ok := skipValue(data, i)
		if !ok {
			return nil, false
		}
		out = append(out, data[i:end])
		i = skipSpace(data, end)
		if i >= len(data) {
			return nil, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case ']':
			return out, skipSpace(data, i+1) == len(data)
		default:
			return nil, false
		}
	}
}

// skipValue returns the end of the JSON value starting at i.
func skipValue(data []byte, i int) (int, bool) {
	if i >= len(data) {
		return 0, false
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, ok := skipString(data, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	case ',', ':', '}', ']':
		return 0, false
	}
	// A number or a literal: up to the next delimiter. The decoder
	// checks it.
	j := i
	for j < len(data) && !isDelimiter(data[j]) {
		j++
	}
	return j, true
}

func isDelimiter(c byte) bool {
	switch c {
	case ',', '}', ']', ':', '"', '{', '[', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// skipString returns the end (after the closing quote) of the JSON string
// starting at i.
func skipString(data []byte, i int) (int, bool) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
