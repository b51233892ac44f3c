package infra_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode"
)

// promQL keywords and the names that are not metrics: aggregation and function names are
// recognised by the "(" that follows them, so only operators, modifiers and literals are here.
var promKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "bool": true, "offset": true, "inf": true, "nan": true,
	"atan2": true,
}

// aggregations may be written "sum by (l) (expr)": the modifier comes before the "(".
var aggregations = map[string]bool{"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true,
	"stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true}

// labelListKeywords take a parenthesised list of label names, not metrics.
var labelListKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// metricNames returns the metric names a PromQL expression selects, sorted and unique. It is a
// lexer, not a parser, but one that knows every place an identifier is not a metric: inside a
// label matcher's braces (label names; a `__name__` matcher's value is a metric), inside a range
// or subquery's brackets, in the label list after by/without/on/ignoring/group_left/group_right,
// a function or aggregation name (followed by "("), a keyword, a number, a string, and Grafana's
// $variables. label_values(metric, label) (Grafana's variable query) names a label second.
func metricNames(expr string) ([]string, error) {
	var names []string
	add := func(n string) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	rs := []rune(expr)
	i := 0
	skipSpace := func(j int) int {
		for j < len(rs) && unicode.IsSpace(rs[j]) {
			j++
		}
		return j
	}
	isIdentStart := func(r rune) bool { return r == '_' || r == ':' || unicode.IsLetter(r) }
	isIdent := func(r rune) bool { return isIdentStart(r) || unicode.IsDigit(r) }
	// skipString returns the index after the string literal starting at j.
	skipString := func(j int) (int, string, error) {
		q := rs[j]
		var b strings.Builder
		for k := j + 1; k < len(rs); k++ {
			if rs[k] == '\\' && q != '`' && k+1 < len(rs) {
				b.WriteRune(rs[k+1])
				k++
				continue
			}
			if rs[k] == q {
				return k + 1, b.String(), nil
			}
			b.WriteRune(rs[k])
		}
		return 0, "", fmt.Errorf("unterminated string at %d in %q", j, expr)
	}
	var parenStack []string // what each open "(" belongs to: a function name, a label list, or ""
	labelValuesArg := -1    // argument index inside label_values(...)
	for i < len(rs) {
		r := rs[i]
		switch {
		case unicode.IsSpace(r):
			i++
		case r == '"' || r == '\'' || r == '`':
			end, _, err := skipString(i)
			if err != nil {
				return nil, err
			}
			i = end
		case r == '#': // comment to end of line
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
		case r == '{':
			// Label matchers: name op "value", …; only __name__ names a metric.
			j := i + 1
			for {
				j = skipSpace(j)
				if j >= len(rs) {
					return nil, fmt.Errorf("unterminated { in %q", expr)
				}
				if rs[j] == '}' {
					j++
					break
				}
				if rs[j] == ',' {
					j++
					continue
				}
				start := j
				for j < len(rs) && isIdent(rs[j]) {
					j++
				}
				label := string(rs[start:j])
				if label == "" {
					return nil, fmt.Errorf("bad label matcher at %d in %q", j, expr)
				}
				j = skipSpace(j)
				for j < len(rs) && strings.ContainsRune("=!~", rs[j]) {
					j++
				}
				j = skipSpace(j)
				if j >= len(rs) || !strings.ContainsRune("\"'`", rs[j]) {
					return nil, fmt.Errorf("label %s without a quoted value in %q", label, expr)
				}
				end, value, err := skipString(j)
				if err != nil {
					return nil, err
				}
				if label == "__name__" {
					add(value)
				}
				j = end
			}
			i = j
		case r == '[':
			depth := 0
			for ; i < len(rs); i++ {
				if rs[i] == '[' {
					depth++
				} else if rs[i] == ']' {
					depth--
					if depth == 0 {
						i++
						break
					}
				}
			}
		case r == '(':
			parenStack = append(parenStack, "")
			i++
		case r == ')':
			if len(parenStack) > 0 {
				if parenStack[len(parenStack)-1] == "label_values" {
					labelValuesArg = -1
				}
				parenStack = parenStack[:len(parenStack)-1]
			}
			i++
		case r == ',':
			if len(parenStack) > 0 && parenStack[len(parenStack)-1] == "label_values" {
				labelValuesArg++
			}
			i++
		case r == '$': // a Grafana variable: $name, ${name}, $__rate_interval
			i++
			if i < len(rs) && rs[i] == '{' {
				for i < len(rs) && rs[i] != '}' {
					i++
				}
				i++
				continue
			}
			for i < len(rs) && isIdent(rs[i]) {
				i++
			}
		case unicode.IsDigit(r) || r == '.' && i+1 < len(rs) && unicode.IsDigit(rs[i+1]):
			// A number or a duration (5m, 1h30m, 1e3, 0x1f): letters that follow belong to it.
			for i < len(rs) && (isIdent(rs[i]) || rs[i] == '.') {
				i++
			}
		case isIdentStart(r):
			start := i
			for i < len(rs) && isIdent(rs[i]) {
				i++
			}
			word := string(rs[start:i])
			next := skipSpace(i)
			lower := strings.ToLower(word)
			switch {
			case labelListKeywords[lower]:
				if next < len(rs) && rs[next] == '(' {
					// Skip the label list.
					for i = next; i < len(rs) && rs[i] != ')'; i++ {
					}
					i++
				}
			case promKeywords[lower]:
			case aggregations[lower] && next < len(rs) && isIdentStart(rs[next]) &&
				(hasWordAt(rs, next, "by") || hasWordAt(rs, next, "without")):
				// "sum by (…) (…)": the aggregation's own "(" comes after its modifier.
			case next < len(rs) && rs[next] == '(':
				parenStack = append(parenStack, word)
				if word == "label_values" {
					labelValuesArg = 0
				}
				i = next + 1
			case len(parenStack) > 0 && parenStack[len(parenStack)-1] == "label_values" && labelValuesArg > 0:
				// label_values(metric, label): the second argument is a label.
			default:
				add(word)
			}
		default:
			i++ // operators: + - * / % ^ == != > < >= <= @ :
		}
	}
	sort.Strings(names)
	return names, nil
}

// hasWordAt reports whether the identifier starting at i in rs is word.
func hasWordAt(rs []rune, i int, word string) bool {
	end := i + len([]rune(word))
	if end > len(rs) || !strings.EqualFold(string(rs[i:end]), word) {
		return false
	}
	return end == len(rs) || !(rs[end] == '_' || unicode.IsLetter(rs[end]) || unicode.IsDigit(rs[end]))
}

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{`rate(ferry_uploads_total{job="ferry", result=~"failed|aborted"}[5m])`, []string{"ferry_uploads_total"}},
		{`sum by (instance, protocol) (rate(a_total[5m])) / ignoring(result) group_left(protocol) sum without (le) (b)`,
			[]string{"a_total", "b"}},
		{`histogram_quantile(0.95, sum by (le) (rate(x_seconds_bucket{job="ferry"}[$__rate_interval])))`, []string{"x_seconds_bucket"}},
		{`{__name__="weird_metric", job="ferry"} > 1e3 and on(instance) c offset 5m`, []string{"c", "weird_metric"}},
		{`max_over_time(d[1h:5m]) > bool 0x1f or vector(0)`, []string{"d"}},
		{`label_values(ferry_ready{job="ferry"}, instance)`, []string{"ferry_ready"}},
		{`absent(ferry_ready{job="ferry", instance=~"$instance"}) # comment naming not_a_metric`, []string{"ferry_ready"}},
		{"e{path=\"a}b{\\\"c\"} - f{l=`x,y`} * Inf", []string{"e", "f"}},
		{`g > 768 * 1024 * 1024 and h{job="ferry"} @ start()`, []string{"g", "h"}},
		{`sum(rate(ferry_s3_errors_total{code!~"NotFound|Canceled"}[5m])) by (operation)`, []string{"ferry_s3_errors_total"}},
	} {
		got, err := metricNames(tc.expr)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%q) = %v, %v; want %v", tc.expr, got, err, tc.want)
		}
	}
	for _, bad := range []string{`a{job="x"`, `a{job=x}`, `a{job="x}`} {
		if _, err := metricNames(bad); err == nil {
			t.Errorf("metricNames(%q): no error", bad)
		}
	}
}
