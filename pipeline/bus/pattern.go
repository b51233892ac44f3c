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
	q  *quamina.Quamina
}

// CompilePattern compiles an EventBridge event pattern, refusing what AddRule refuses (an
// operator the bus cannot evaluate is an ErrUnsupportedPattern, never a silent mismatch).
func CompilePattern(pattern string) (*Pattern, error) {
	q, _, err := compilePattern(pattern)
	if err != nil {
		return nil, err
	}
	return &Pattern{q: q}, nil
}

// Matches reports whether event, an EventBridge event as JSON, matches the pattern.
func (p *Pattern) Matches(event []byte) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, err := p.q.MatchesForEvent(event)
	if err != nil {
		return false, fmt.Errorf("match event: %w", err)
	}
	return len(m) > 0, nil
}

// compilePattern checks an EventBridge event pattern, translates the operators quamina lacks
// but can express (suffix and wildcard become shellstyle "*x"), and returns a matcher for it.
//
// Supported: exact values (string, number, true/false/null), prefix, suffix (as "*x"),
// wildcard (single, non-adjacent '*', no escapes), shellstyle, exists, anything-but (a string
// or a list of strings), equals-ignore-case. Refused with ErrUnsupportedPattern: numeric, cidr,
// $or, anything-but with numbers or a nested operator, prefix/suffix with equals-ignore-case,
// and anything else.
func compilePattern(pattern string) (*quamina.Quamina, string, error) {
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
	out, err := translateObject(obj, "")
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
	return q, translated, nil
}

func translateObject(obj map[string]any, path string) (map[string]any, error) {
	out := make(map[string]any, len(obj))
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := join(path, k)
		if k == "$or" {
			return nil, fmt.Errorf("%w: %s: $or is not supported by the embedded bus", ErrUnsupportedPattern, p)
		}
		switch v := obj[k].(type) {
		case map[string]any:
			sub, err := translateObject(v, p)
			if err != nil {
				return nil, err
			}
			out[k] = sub
		case []any:
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

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
