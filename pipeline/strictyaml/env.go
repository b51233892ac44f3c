package strictyaml

import (
	"fmt"
	"slices"
	"strings"
)

// expand replaces ${NAME} with lookup(NAME). "$${" is a literal "${". It returns the names that
// lookup reported unset (each once, in order) and an error for a malformed reference.
func expand(s string, lookup func(string) (string, bool)) (string, []string, error) {
	if !strings.Contains(s, "${") {
		return s, nil, nil
	}
	var b strings.Builder
	var missing []string
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		if i > 0 && s[i-1] == '$' { // "$${" -> "${"
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", missing, fmt.Errorf("unterminated ${ in %q", s)
		}
		name := s[i+2 : i+2+end]
		if !validEnvName(name) {
			return "", missing, fmt.Errorf("invalid environment reference ${%s} (only ${NAME} is supported)", name)
		}
		v, ok := lookup(name)
		if !ok {
			if !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
		}
		b.WriteString(v)
		s = s[i+2+end+1:]
	}
	return b.String(), missing, nil
}

func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
