package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"quamina.net/go/quamina"
)

// ErrUnsupportedPattern reports an EventBridge pattern operator that the embedded bus cannot
// evaluate (quamina v1.4.0 does not implement it). Rules using one are refused at AddRule, so a
// rule never silently matches less (or more) than it would on AWS.
var ErrUnsupportedPattern = errors.New("unsupported event pattern")

// Pattern is a compiled EventBridge event pattern, evaluated exactly as the bus evaluates its
// rules' patterns: other code (the infra tests that judge the deployed rules' patterns) asks the
// same matcher the embedded default runs. Safe for concurrent use.
type Pattern struct {
	mu sync.Mutex // quamina instances are not safe for concurrent matching
	m  *matcher
}

// CompilePattern compiles an EventBridge event pattern, refusing what AddRule refuses (an
// operator the bus cannot evaluate is an ErrUnsupportedPattern, never a silent mismatch).
func CompilePattern(pattern string) (*Pattern, error) {
	m, _, err := compilePattern(pattern)
	if err != nil {
		return nil, err
	}
	return &Pattern{m: m}, nil
}

// Matches reports whether event, an EventBridge event as JSON, matches the pattern.
func (p *Pattern) Matches(event []byte) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ok, err := p.m.matches(event)
	if err != nil {
		return false, fmt.Errorf("match event: %w", err)
	}
	return ok, nil
}

// compilePattern checks an EventBridge event pattern, translates the operators quamina lacks
// but can express (suffix and wildcard become shellstyle "*x"), and returns a matcher for it.
//
// Supported: exact values (string, number, true/false/null), prefix, suffix (as "*x"),
// wildcard (single, non-adjacent '*', no escapes), shellstyle, exists, anything-but (a string,
// a list of strings, or a prefix or suffix: {"anything-but": {"prefix": ".ferry/"}}, as the
// only value of its field), equals-ignore-case. Refused with ErrUnsupportedPattern: numeric,
// cidr, $or, anything-but with numbers or another operator, prefix/suffix with
// equals-ignore-case, and anything else.
func compilePattern(pattern string) (*matcher, string, error) {
	dec := json.NewDecoder(strings.NewReader(pattern))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, "", fmt.Errorf("parse event pattern: %w", err)
	}
	if dec.More() {
		return nil, "", fmt.Errorf("parse event pattern: trailing data after the pattern")
	}
	obj, ok := root.(map[string]any)
	if !ok {
		return nil, "", fmt.Errorf("event pattern must be a JSON object")
	}
	if len(obj) == 0 {
		return nil, "", fmt.Errorf("event pattern must not be empty")
	}
	m := &matcher{}
	out, err := translateObject(obj, nil, m)
	if err != nil {
		return nil, "", err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, "", fmt.Errorf("encode event pattern: %w", err)
	}
	translated := strings.TrimSpace(buf.String())
	q, err := quamina.New()
	if err != nil {
		return nil, "", fmt.Errorf("new matcher: %w", err)
	}
	if err := q.AddPattern(true, translated); err != nil {
		return nil, "", fmt.Errorf("event pattern: %w", err)
	}
	m.q = q
	return m, translated, nil
}

// matcher evaluates a rule's pattern: quamina what it can express, then in Go the exclusions it
// cannot (anything-but a prefix or a suffix), on the events quamina matched. In quamina's
// pattern an excluded field is only required to exist, as anything-but requires on AWS.
type matcher struct {
	q        *quamina.Quamina
	excluded []exclusion
}

// exclusion is {"anything-but": {"prefix" or "suffix": value}} on the field at path.
type exclusion struct {
	path   []string
	suffix bool // else prefix
	value  string
}

// allows reports whether s is a value the exclusion lets through.
func (x exclusion) allows(s string) bool {
	if x.suffix {
		return !strings.HasSuffix(s, x.value)
	}
	return !strings.HasPrefix(s, x.value)
}

// matches reports whether event matches the pattern.
func (m *matcher) matches(event []byte) (bool, error) {
	found, err := m.q.MatchesForEvent(event)
	if err != nil || len(found) == 0 || len(m.excluded) == 0 {
		return len(found) > 0, err
	}
	dec := json.NewDecoder(bytes.NewReader(event))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return false, err
	}
	for _, x := range m.excluded {
		if !anyValue(root, x.path, x.allows) {
			return false, nil
		}
	}
	return true, nil
}

// anyValue reports whether some string at path in v satisfies ok. As in EventBridge, an array
// on the way (or at the end) matches when any of its elements does; a value that is not a
// string never matches.
func anyValue(v any, path []string, ok func(string) bool) bool {
	if arr, isArr := v.([]any); isArr {
		for _, e := range arr {
			if anyValue(e, path, ok) {
				return true
			}
		}
		return false
	}
	if len(path) == 0 {
		s, isStr := v.(string)
		return isStr && ok(s)
	}
	obj, isObj := v.(map[string]any)
	if !isObj {
		return false
	}
	next, present := obj[path[0]]
	return present && anyValue(next, path[1:], ok)
}

func translateObject(obj map[string]any, path []string, m *matcher) (map[string]any, error) {
	out := make(map[string]any, len(obj))
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fieldPath := append(path[:len(path):len(path)], k)
		p := strings.Join(fieldPath, ".")
		if k == "$or" {
			return nil, fmt.Errorf("%w: %s: $or is not supported by the embedded bus", ErrUnsupportedPattern, p)
		}
		switch v := obj[k].(type) {
		case map[string]any:
			sub, err := translateObject(v, fieldPath, m)
			if err != nil {
				return nil, err
			}
			out[k] = sub
		case []any:
			if x, ok, err := exclusionOf(v, p); err != nil {
				return nil, err
			} else if ok {
				x.path = fieldPath
				m.excluded = append(m.excluded, x)
				out[k] = []any{map[string]any{"exists": true}}
				continue
			}
			vals, err := translateValues(v, p)
			if err != nil {
				return nil, err
			}
			out[k] = vals
		default:
			return nil, fmt.Errorf("event pattern: %s: leaf values must be in an array, got %s", p, compactJSON(v))
		}
	}
	return out, nil
}

// exclusionOf recognises a field's values that are one anything-but prefix or suffix, which
// quamina cannot evaluate and the matcher checks itself. Alongside other values of the same
// field (an "or"), it is refused: the matcher can only add conditions, not alternatives.
func exclusionOf(vals []any, path string) (exclusion, bool, error) {
	for _, v := range vals {
		op, ok := v.(map[string]any)
		if !ok {
			continue
		}
		arg, ok := op["anything-but"].(map[string]any)
		if !ok {
			continue
		}
		if len(op) != 1 || len(arg) != 1 {
			return exclusion{}, false, fmt.Errorf("event pattern: %s: an operator object must have exactly one field, got %s", path, compactJSON(op))
		}
		for name, val := range arg {
			s, isStr := val.(string)
			if (name != "prefix" && name != "suffix") || !isStr {
				return exclusion{}, false, fmt.Errorf("%w: %s: anything-but %s (only a string, a list of strings, or a prefix or suffix string is supported)",
					ErrUnsupportedPattern, path, compactJSON(arg))
			}
			if len(vals) != 1 {
				return exclusion{}, false, fmt.Errorf("%w: %s: anything-but %s must be the only value of its field", ErrUnsupportedPattern, path, name)
			}
			return exclusion{suffix: name == "suffix", value: s}, true, nil
		}
	}
	return exclusion{}, false, nil
}

func translateValues(vals []any, path string) ([]any, error) {
	out := make([]any, 0, len(vals))
	for _, v := range vals {
		switch x := v.(type) {
		case string, json.Number, bool, nil:
			out = append(out, x)
		case map[string]any:
			op, err := translateOperator(x, path)
			if err != nil {
				return nil, err
			}
			out = append(out, op)
		default:
			return nil, fmt.Errorf("event pattern: %s: unexpected value %s in a list", path, compactJSON(v))
		}
	}
	return out, nil
}

func translateOperator(op map[string]any, path string) (map[string]any, error) {
	if len(op) != 1 {
		return nil, fmt.Errorf("event pattern: %s: an operator object must have exactly one field, got %s", path, compactJSON(op))
	}
	for name, arg := range op {
		switch name {
		case "prefix", "equals-ignore-case", "shellstyle":
			s, ok := arg.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %s: %s takes a string, got %s", ErrUnsupportedPattern, path, name, compactJSON(arg))
			}
			if name == "shellstyle" {
				if err := checkGlob(s, name, path); err != nil {
					return nil, err
				}
			}
			return map[string]any{name: s}, nil
		case "suffix":
			s, ok := arg.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %s: suffix takes a string, got %s", ErrUnsupportedPattern, path, compactJSON(arg))
			}
			if strings.ContainsAny(s, `*"\`) {
				return nil, fmt.Errorf("%w: %s: suffix %q contains '*', '\"' or '\\', which cannot be expressed as a shellstyle pattern", ErrUnsupportedPattern, path, s)
			}
			return map[string]any{"shellstyle": "*" + s}, nil
		case "wildcard":
			s, ok := arg.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %s: wildcard takes a string, got %s", ErrUnsupportedPattern, path, compactJSON(arg))
			}
			if err := checkGlob(s, name, path); err != nil {
				return nil, err
			}
			return map[string]any{"shellstyle": s}, nil
		case "exists":
			b, ok := arg.(bool)
			if !ok {
				return nil, fmt.Errorf("event pattern: %s: exists takes true or false, got %s", path, compactJSON(arg))
			}
			return map[string]any{"exists": b}, nil
		case "anything-but":
			switch a := arg.(type) {
			case string:
				return map[string]any{"anything-but": []any{a}}, nil
			case []any:
				for _, e := range a {
					if _, ok := e.(string); !ok {
						return nil, fmt.Errorf("%w: %s: anything-but supports only strings, got %s", ErrUnsupportedPattern, path, compactJSON(e))
					}
				}
				if len(a) == 0 {
					return nil, fmt.Errorf("event pattern: %s: anything-but list is empty", path)
				}
				return map[string]any{"anything-but": a}, nil
			default:
				return nil, fmt.Errorf("%w: %s: anything-but %s (only a string or a list of strings is supported)", ErrUnsupportedPattern, path, compactJSON(arg))
			}
		default:
			return nil, fmt.Errorf("%w: %s: operator %q (supported: prefix, suffix, wildcard, shellstyle, exists, anything-but, equals-ignore-case)", ErrUnsupportedPattern, path, name)
		}
	}
	panic("unreachable")
}

// checkGlob accepts what quamina's shellstyle can evaluate with EventBridge wildcard meaning:
// '*' for any run of characters, never two adjacent, and no escapes.
func checkGlob(s, op, path string) error {
	if strings.Contains(s, "**") {
		return fmt.Errorf("%w: %s: %s %q has adjacent '*'", ErrUnsupportedPattern, path, op, s)
	}
	if strings.ContainsAny(s, `"\`) {
		return fmt.Errorf("%w: %s: %s %q contains '\"' or '\\' (escapes are not supported)", ErrUnsupportedPattern, path, op, s)
	}
	return nil
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
