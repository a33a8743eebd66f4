package filtertest

import (
	"encoding/json"
	"fmt"
)

// jsonMarshal turns a decoded YAML value into JSON (YAML maps may have
// non-string keys, which encoding/json refuses).
func jsonMarshal(v any) ([]byte, error) { return json.Marshal(jsonable(v)) }

func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = jsonable(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[fmt.Sprint(k)] = jsonable(e)
		}
		return out
	case []any:
		for i, e := range t {
			t[i] = jsonable(e)
		}
		return t
	}
	return v
}
