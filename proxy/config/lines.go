package config

import (
	"bytes"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file maps between the two ways of naming a place in a config: a field
// path ("listeners[0].virtual_hosts[1].routes[2].match") and a line of the
// YAML source. Validation finds problems by path and asks for the line;
// yaml.v3 reports decode problems by line and we ask for the path.

// pathSeg is one step of a field path: a mapping key, or (key == "") an index
// into a sequence.
type pathSeg struct {
	key   string
	index int
}

// splitPath turns "a[0].b.c[2]" into its steps. It never fails: text it does
// not understand becomes a key, so a resolver just stops early.
func splitPath(p string) []pathSeg {
	var segs []pathSeg
	for p != "" {
		switch p[0] {
		case '.':
			p = p[1:]
		case '[':
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return append(segs, pathSeg{key: p})
			}
			i, err := strconv.Atoi(p[1:end])
			if err != nil || i < 0 {
				segs = append(segs, pathSeg{key: p[:end+1]})
			} else {
				segs = append(segs, pathSeg{index: i})
			}
			p = p[end+1:]
		default:
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			segs = append(segs, pathSeg{key: p[:end]})
			p = p[end:]
		}
	}
	return segs
}

// lineIndex answers line and path questions about one YAML document. A zero
// lineIndex (no source, or source that does not parse) answers 0 and "".
type lineIndex struct {
	root *yaml.Node // the document's top value, nil when unknown
	// byLine lists, per source line, the fields whose key or value sits on
	// it, in document order.
	byLine map[int][]lineEntry
}

// lineEntry is one field seen while indexing.
type lineEntry struct {
	path      string
	key       string
	keyLine   int
	valueLine int
	valueKind yaml.Kind
	value     string // a scalar value
	depth     int
}

// newLineIndex parses data (the first document only, as the decoder does).
func newLineIndex(data []byte) *lineIndex {
	ix := &lineIndex{}
	if len(data) == 0 {
		return ix
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return ix
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		ix.root = doc.Content[0]
	}
	return ix
}

// deref follows an alias to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// lookupKey finds key in a mapping node, including values merged in with
// "<<". It returns the key node and the value node.
func lookupKey(m *yaml.Node, key string, depth int) (k, v *yaml.Node) {
	m = deref(m)
	if m == nil || m.Kind != yaml.MappingNode || depth > 10 {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key && m.Content[i].Tag != "!!merge" {
			return m.Content[i], m.Content[i+1]
		}
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Tag != "!!merge" {
			continue
		}
		src := deref(m.Content[i+1])
		if src != nil && src.Kind == yaml.SequenceNode {
			for _, s := range src.Content {
				if k, v := lookupKey(s, key, depth+1); k != nil {
					return k, v
				}
			}
		} else if k, v := lookupKey(src, key, depth+1); k != nil {
			return k, v
		}
	}
	return nil, nil
}

// line returns the source line of the field at path: the line of its key
// (or, for a sequence element, of the element). When the path goes further
// than the source (a required field left out), it returns the line of the
// deepest part that exists, which is where the missing field belongs.
func (ix *lineIndex) line(path string) int {
	if ix == nil || ix.root == nil {
		return 0
	}
	n := deref(ix.root)
	best := n.Line
	for _, s := range splitPath(path) {
		n = deref(n)
		if n == nil {
			break
		}
		if s.key == "" {
			if n.Kind != yaml.SequenceNode || s.index >= len(n.Content) {
				break
			}
			n = n.Content[s.index]
			best = n.Line
			continue
		}
		k, v := lookupKey(n, s.key, 0)
		if k == nil {
			break
		}
		best, n = k.Line, v
	}
	return best
}

// pathAt returns the field path for a decode problem yaml.v3 reported at
// line. field is the key the message names ("field foo not found"), or "";
// kind is the YAML kind of the value that failed to decode, or 0.
func (ix *lineIndex) pathAt(line int, field string, kind yaml.Kind, value string) string {
	if ix == nil || ix.root == nil {
		return ""
	}
	if ix.byLine == nil {
		ix.byLine = map[int][]lineEntry{}
		ix.walk(ix.root, "", 0, map[*yaml.Node]bool{})
	}
	entries := ix.byLine[line]
	if field != "" {
		for _, e := range entries {
			if e.key == field && e.keyLine == line {
				return e.path
			}
		}
	}
	// Otherwise the deepest field whose value starts on the line, preferring
	// a value of the kind and text the message names (yaml.v3 cuts values
	// longer than 10 bytes to 7 and "...").
	value = strings.TrimSuffix(value, "...")
	var found *lineEntry
	for pass := 0; pass < 3 && found == nil; pass++ {
		for i := range entries {
			e := &entries[i]
			if e.valueLine != line ||
				(pass < 2 && kind != 0 && e.valueKind != kind) ||
				(pass < 1 && value != "" && !strings.HasPrefix(e.value, value)) {
				continue
			}
			if found == nil || e.depth > found.depth {
				found = e
			}
		}
	}
	if found == nil && len(entries) > 0 {
		found = &entries[0]
	}
	if found == nil {
		return ""
	}
	return found.path
}

// walk records every field under n in byLine. It enters an anchored node
// once (through the first alias or merge that names it) so that recursive
// or repeated aliases cost nothing.
func (ix *lineIndex) walk(n *yaml.Node, path string, depth int, seen map[*yaml.Node]bool) {
	if n != nil && n.Kind == yaml.AliasNode {
		n = deref(n)
	}
	if n == nil || seen[n] || depth > 100 {
		return
	}
	seen[n] = true
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				ix.walk(v, path, depth, seen)
				continue
			}
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			dv := deref(v)
			e := lineEntry{path: p, key: k.Value, keyLine: k.Line, depth: depth + 1}
			if dv != nil {
				e.valueLine, e.valueKind = dv.Line, dv.Kind
				if dv.Kind == yaml.ScalarNode {
					e.value = dv.Value
				}
			}
			ix.byLine[k.Line] = append(ix.byLine[k.Line], e)
			if dv != nil && dv.Line != k.Line {
				ix.byLine[dv.Line] = append(ix.byLine[dv.Line], e)
			}
			ix.walk(v, p, depth+1, seen)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			dc := deref(c)
			if dc == nil {
				continue
			}
			e := lineEntry{path: p, keyLine: -1, valueLine: dc.Line, valueKind: dc.Kind, depth: depth + 1}
			ix.byLine[dc.Line] = append(ix.byLine[dc.Line], e)
			ix.walk(c, p, depth+1, seen)
		}
	}
}

var (
	// yamlLineRe finds the line in yaml.v3's messages ("yaml: line 3: ...",
	// "line 3: ...").
	yamlLineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): (?s:(.*))$`)
	// notFoundRe and friends pick yaml.v3's messages apart to name the field.
	notFoundRe  = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	setTwiceRe  = regexp.MustCompile(`^field (\S+) already set in type \S+$`)
	dupKeyRe    = regexp.MustCompile(`^mapping key "(.*)" already defined at line \d+$`)
	unmarshalRe = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	// quotedValueRe finds the value our own unmarshalers quote ("bad
	// duration \"5\""), so a flow mapping's error lands on the right field.
	quotedValueRe = regexp.MustCompile(`^(?:bad )?duration "((?:[^"\\]|\\.)*)"`)
)

// decodeErrors turns an error from yaml.v3's decoder into FieldErrors that
// name the file, the line and, when the source parses, the field.
func decodeErrors(name string, data []byte, err error) Errors {
	var msgs []string
	if te, ok := err.(*yaml.TypeError); ok {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	if _, ok := err.(*yaml.TypeError); !ok && strings.HasPrefix(err.Error(), "yaml: ") {
		return Errors{syntaxError(name, data, err.Error())}
	}
	ix := newLineIndex(data)
	out := make(Errors, 0, len(msgs))
	for _, m := range msgs {
		fe := FieldError{File: name, Reason: m}
		if sm := yamlLineRe.FindStringSubmatch(m); sm != nil {
			fe.Line, _ = strconv.Atoi(sm[1])
			fe.Reason = sm[2]
			field, kind, value := "", yaml.Kind(0), ""
			if f := notFoundRe.FindStringSubmatch(fe.Reason); f != nil {
				field = f[1]
				fe.Reason = unknownFieldReason(f[1], f[2])
			} else if f := setTwiceRe.FindStringSubmatch(fe.Reason); f != nil {
				field = f[1]
			} else if f := dupKeyRe.FindStringSubmatch(fe.Reason); f != nil {
				field = f[1]
			} else if f := unmarshalRe.FindStringSubmatch(fe.Reason); f != nil {
				kind = map[string]yaml.Kind{"map": yaml.MappingNode, "seq": yaml.SequenceNode}[f[1]]
				if kind == 0 {
					kind = yaml.ScalarNode
				}
				value = f[2]
				fe.Reason = wrongTypeReason(f[1], f[2], f[3])
			} else if f := quotedValueRe.FindStringSubmatch(fe.Reason); f != nil {
				kind = yaml.ScalarNode
				if v, err := strconv.Unquote(`"` + f[1] + `"`); err == nil {
					value = v
				}
			}
			fe.Path = ix.pathAt(fe.Line, field, kind, value)
		}
		out = append(out, fe)
	}
	return out
}

// unknownFieldReason says what the user can write instead of field.
func unknownFieldReason(field, typeName string) string {
	known := knownFields()[typeName]
	if len(known) == 0 {
		return "unknown field " + strconv.Quote(field)
	}
	return "unknown field " + strconv.Quote(field) + "; known fields here: " + strings.Join(known, ", ")
}

// knownFields maps each schema type's Go name ("config.Listener", as yaml.v3
// prints it) to its YAML field names.
func knownFields() map[string][]string {
	m := map[string][]string{}
	var visit func(t reflect.Type)
	visit = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || m[t.String()] != nil {
			return
		}
		var names []string
		m[t.String()] = names // mark before recursing
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "-" || !f.IsExported() {
				continue
			}
			if tag == "" {
				tag = strings.ToLower(f.Name)
			}
			names = append(names, tag)
			visit(f.Type)
		}
		m[t.String()] = names
	}
	visit(reflect.TypeOf(Config{}))
	return m
}

// maxSyntaxSearchBytes bounds the work syntaxError does to place an error:
// the bytes it may parse in all.
const maxSyntaxSearchBytes = 8 << 20

// syntaxError places a YAML syntax error. yaml.v3 reports the line where the
// enclosing block starts (and counts it from 0), not where the problem is,
// so we look for the shortest run of leading lines that fails the same way:
// its last line is the one to fix.
func syntaxError(name string, data []byte, msg string) FieldError {
	msg = strings.TrimPrefix(msg, "yaml: ")
	fe := FieldError{File: name, Reason: msg}
	if sm := yamlLineRe.FindStringSubmatch(msg); sm != nil {
		fe.Line, _ = strconv.Atoi(sm[1])
		fe.Reason = sm[2]
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	end, budget := 0, maxSyntaxSearchBytes
	for k, l := range lines {
		end += len(l)
		if budget -= end; budget < 0 {
			break
		}
		var n yaml.Node
		err := yaml.Unmarshal(data[:end], &n)
		if err == nil {
			continue
		}
		got := strings.TrimPrefix(err.Error(), "yaml: ")
		if sm := yamlLineRe.FindStringSubmatch(got); sm != nil {
			got = sm[2]
		}
		if got == fe.Reason {
			fe.Line = k + 1
			break
		}
	}
	return fe
}

// wrongTypeReason rewrites yaml.v3's "cannot unmarshal !!str `abc` into int"
// as "want an integer, got the string "abc"".
func wrongTypeReason(tag, value, goType string) string {
	got := map[string]string{
		"str": "the string", "int": "the number", "float": "the number", "bool": "the boolean",
		"null": "null", "seq": "a list", "map": "a mapping", "timestamp": "the timestamp",
	}[tag]
	if got == "" {
		got = "!!" + tag
	}
	if value != "" && tag != "null" {
		got += " " + strconv.Quote(value)
	}
	want := "a mapping (" + goType + ")"
	switch {
	case goType == "string" || goType == "config.RawConfig":
		want = "a string"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		want = "a whole number"
	case strings.HasPrefix(goType, "float"):
		want = "a number"
	case goType == "bool":
		want = "true or false"
	case strings.HasPrefix(goType, "[]"):
		want = "a list"
	case strings.HasPrefix(goType, "map["):
		want = "a mapping"
	}
	return "want " + want + ", got " + got
}
