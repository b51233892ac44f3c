package inspect

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
)

// TestJSONForms: the log is searched for a key as it appears in an event's JSON, whichever
// escaping wrote it.
func TestJSONForms(t *testing.T) {
	for _, key := range []string{"incoming/demo/report.csv", "incoming/a&b/<ñ> \"q\".csv"} {
		ev, _ := json.Marshal(map[string]string{"key": key}) // the bus's own encoding
		forms := jsonForms(key)
		if !slices.ContainsFunc(forms, func(f []byte) bool { return bytes.Contains(ev, f) }) {
			t.Errorf("%q: none of %q is in %s", key, forms, ev)
		}
	}
}
