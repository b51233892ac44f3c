package route

// Step is one transform of a route's chain, by registry name, with its options.
// TEMPORARY: the same fields as transform.Step (engineer A); replaced by it once pipeline/transform lands.
type Step struct {
	Name    string
	Options map[string]any
}
