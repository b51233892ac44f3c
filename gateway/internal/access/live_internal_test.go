package access

import (
	"reflect"
	"testing"
)

// live must offer every ability of restricted: a method added to restricted (a new optional
// storage interface) and not to live would silently vanish from every logged-in session.
func TestLiveHasRestrictedMethods(t *testing.T) {
	r, l := reflect.TypeFor[*restricted](), reflect.TypeFor[*live]()
	for i := range r.NumMethod() {
		m := r.Method(i)
		lm, ok := l.MethodByName(m.Name)
		if !ok {
			t.Errorf("live has no %s", m.Name)
			continue
		}
		if lm.Type.NumIn() != m.Type.NumIn() || lm.Type.NumOut() != m.Type.NumOut() {
			t.Errorf("live.%s is %s, restricted.%s is %s", m.Name, lm.Type, m.Name, m.Type)
		}
	}
}
