package strictyaml

import "testing"

// Decoding arbitrary text never panics, and a success never comes with problems.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"name: x\ninner:\n  count: 3\n",
		"items:\n  - addr: a\n  - {addr: b}\n",
		"inner: &a {addr: x}\nptr: *a\n",
		"name: ${A}$${B}\n",
		"nets: [10.0.0.0/8]\ntags: [a, b]\n",
		"- a\n",
		"name: |\n  text\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		var d doc
		pos, err := Decode("f.yaml", []byte(src), &d, Options{Lookup: env(map[string]string{"A": "1"})})
		if err == nil && pos == nil {
			t.Fatal("nil positions without error")
		}
	})
}
