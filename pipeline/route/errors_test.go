package route

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every problem in a file is reported at once, each at its line, ordered by line.
func TestParseReportsEveryProblemWithLine(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "bad.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("testdata/bad.yaml", data)
	if err == nil {
		t.Fatal("bad.yaml parsed")
	}
	got := err.Error() + "\n"
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(filepath.Join("testdata", "bad.errors"), []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, rerr := os.ReadFile(filepath.Join("testdata", "bad.errors"))
	if rerr != nil {
		t.Fatal(rerr)
	}
	if got != string(want) {
		t.Errorf("errors:\n%s\nwant:\n%s", got, want)
	}
	var p *Problem
	if !errors.As(err, &p) || p.File != "testdata/bad.yaml" || p.Line == 0 {
		t.Errorf("not a *Problem with file and line: %#v", p)
	}
}

const okRoute = `
datasets: {d: {}}
routes:
  - name: r
    match: {prefix: in/}
    transforms: [{name: copy}]
    output: "out/{name}"
    quarantine: "q/"
    dataset: d
`

// One problem per case, at the line given.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // "file:line: ..." substring
	}{
		{"unknown top key", "routez: []\n" + okRoute, "x.yaml:1: unknown key \"routez\" (did you mean \"routes\"?)"},
		{"unknown route key", strings.Replace(okRoute, "    dataset: d", "    dataset: d\n    outptu: x", 1), "x.yaml:10: routes[0]: unknown key \"outptu\" (did you mean \"output\"?)"},
		{"unknown match key", strings.Replace(okRoute, "{prefix: in/}", "{prefix: in/, suffix: x}", 1), "x.yaml:5: routes[0].match: unknown key \"suffix\" (known: glob, max_size, min_size, prefix, user)"},
		{"unknown step key", strings.Replace(okRoute, "{name: copy}", "{name: copy, opts: {}}", 1), "x.yaml:6: routes[0].transforms[0]: unknown key \"opts\" (known: name, options)"},
		{"unknown dataset key", strings.Replace(okRoute, "d: {}", "d: {topik: x}", 1), "x.yaml:2: datasets.d: unknown key \"topik\" (did you mean \"topic\"?)"},
		{"syntax", "routes: [\n", "x.yaml:1:"},
		{"two documents", okRoute + "---\nroutes: []\n", "only one YAML document"},
		{"list where mapping", strings.Replace(okRoute, "{prefix: in/}", "[in/]", 1), "x.yaml:5: routes[0].match: expected a mapping"},
		{"bad size", strings.Replace(okRoute, "{prefix: in/}", "{prefix: in/, max_size: 5 parsecs}", 1), "x.yaml:5: routes[0].match.max_size: invalid size \"5 parsecs\""},
		{"duplicate key", strings.Replace(okRoute, "    dataset: d", "    dataset: d\n    dataset: d", 1), "x.yaml:10: yaml: mapping key \"dataset\" already defined"},
		{"no routes", "datasets: {d: {}}\n", "routes: no routes"},
		{"bad glob", strings.Replace(okRoute, "{prefix: in/}", "{prefix: in/, glob: \"[a-\"}", 1), "x.yaml:5: routes[0].match.glob: glob \"[a-\": syntax error in pattern"},
		{"glob with slash", strings.Replace(okRoute, "{prefix: in/}", "{prefix: in/, glob: \"*/a.csv\"}", 1), "cannot contain /"},
		{"bad ignore glob", "ignore: [\"[\"]\n" + okRoute, "x.yaml:1: ignore[0]: glob \"[\""},
		{"unknown placeholder", strings.Replace(okRoute, "out/{name}", "out/{username}/{name}", 1), "x.yaml:7: routes[0].output: template \"out/{username}/{name}\": unknown placeholder {username}"},
		{"output without name", strings.Replace(okRoute, "out/{name}", "out/{user}.jsonl", 1), "x.yaml:7: routes[0].output: output \"out/{user}.jsonl\" must contain {name} or {stem}"},
		{"leading slash", strings.Replace(okRoute, "out/{name}", "/out/{name}", 1), "x.yaml:7: routes[0].output: template \"/out/{name}\" starts with /"},
		{"no fixed prefix", strings.Replace(okRoute, "q/", "{user}/q/", 1), "x.yaml:8: routes[0].quarantine: template \"{user}/q/\" must start with a fixed prefix"},
		{"missing output", strings.Replace(okRoute, "    output: \"out/{name}\"\n", "", 1), "routes[0].output: output key template is required"},
		{"missing quarantine", strings.Replace(okRoute, "    quarantine: \"q/\"\n", "", 1), "routes[0].quarantine: quarantine prefix or template is required"},
		{"missing dataset", strings.Replace(okRoute, "    dataset: d\n", "", 1), "routes[0].dataset: dataset is required"},
		{"undefined dataset", strings.Replace(okRoute, "dataset: d", "dataset: nope", 1), "x.yaml:9: routes[0].dataset: dataset \"nope\" is not defined"},
		{"no transforms", strings.Replace(okRoute, "    transforms: [{name: copy}]\n", "", 1), "routes[0].transforms: at least one transform"},
		{"unnamed transform", strings.Replace(okRoute, "{name: copy}", "{options: {a: 1}}", 1), "x.yaml:6: routes[0].transforms[0]: transform name is required"},
		{"unknown transform", strings.Replace(okRoute, "{name: copy}", "{name: csv2json}", 1), "x.yaml:6: routes[0].transforms[0].name: transform \"csv2json\": unknown transform"},
		{"unknown options", strings.Replace(okRoute, "{name: copy}", "{name: validate-csv, options: {required: [a], strict: true}}", 1), "x.yaml:6: routes[0].transforms[0].options: transform \"validate-csv\": unknown option \"required\"; unknown option \"strict\""},
		{"bad option value", strings.Replace(okRoute, "{name: copy}", "{name: validate-csv, options: {columns: -1}}", 1), "x.yaml:6: routes[0].transforms[0].options: transform \"validate-csv\": option columns"},
		{"no name", strings.Replace(okRoute, "name: r", "name: \"\"", 1), "routes[0].name: name is required"},
		{"duplicate name", okRoute + "  - {name: r, match: {prefix: in2/}, transforms: [{name: copy}], output: \"out2/{name}\", quarantine: q2/, dataset: d}\n", "x.yaml:10: routes[1].name: route name \"r\" is already used by routes[0]"},
		{"prefix under output", strings.Replace(okRoute, "{prefix: in/}", "{prefix: out/x/}", 1), "x.yaml:5: routes[0].match.prefix: prefix \"out/x/\" is under route \"r\"'s output"},
		{"prefix dotdot", strings.Replace(okRoute, "{prefix: in/}", "{prefix: in/../}", 1), "x.yaml:5: routes[0].match.prefix: prefix \"in/../\" must be a key prefix"},
		{"min above max", strings.Replace(okRoute, "{prefix: in/}", "{prefix: in/, min_size: 2KiB, max_size: 1KiB}", 1), "x.yaml:5: routes[0].match.min_size: min_size 2048 is above max_size 1024"},
		{"max zero", strings.Replace(okRoute, "{prefix: in/}", "{prefix: in/, max_size: 0}", 1), "routes[0].match.max_size: max_size must be above 0"},
		{"marker missing", strings.Replace(okRoute, "    dataset: d", "    dataset: d\n    complete_on: {}", 1), "x.yaml:10: routes[0].complete_on: complete_on needs a marker"},
		{"bad marker glob", strings.Replace(okRoute, "    dataset: d", "    dataset: d\n    complete_on: {marker: \"[\"}", 1), "x.yaml:10: routes[0].complete_on.marker: glob \"[\""},
		{"topic not ARN", strings.Replace(okRoute, "d: {}", "d: {topic: my-topic}", 1), "x.yaml:2: datasets.d.topic: topic \"my-topic\" is not an SNS topic ARN"},
		{"unknown language", strings.Replace(okRoute, "d: {}", "d: {language: fr}", 1), "x.yaml:2: datasets.d.language: language \"fr\" has no built-in templates (have en, es)"},
		{"unknown template kind", strings.Replace(okRoute, "d: {}", "d: {templates: {procesed: {subject: x}}}", 1), "x.yaml:2: datasets.d.templates: unknown key \"procesed\" (did you mean \"processed\"?)"},
		{"unknown template part", strings.Replace(okRoute, "d: {}", "d: {templates: {processed: {title: x}}}", 1), "x.yaml:2: datasets.d.templates.processed: unknown key \"title\" (known: body, sms, subject)"},
		{"template syntax", strings.Replace(okRoute, "d: {}", "d: {templates: {processed: {subject: \"{{.File.Name\"}}}", 1), "x.yaml:2: datasets.d.templates.processed.subject: template processed.subject: unclosed action"},
		{"link expiry too long", strings.Replace(okRoute, "d: {}", "d: {download_links: {expires: 8d}}", 1), "datasets.d.download_links.expires"},
		{"link expiry too long", strings.Replace(okRoute, "d: {}", "d: {download_links: {expires: 200h}}", 1), "x.yaml:2: datasets.d.download_links.expires: expires must be between 1s and 168h0m0s"},
		{"reserved kind attribute", strings.Replace(okRoute, "d: {}", "d: {attributes: {kind: x}}", 1), "attribute \"kind\" is set by the notify handler"},
		{"reserved attribute", strings.Replace(okRoute, "d: {}", "d: {attributes: {route: x}}", 1), "datasets.d.attributes.route: attribute \"route\" is set by the notify handler"},
		{"AWS attribute", strings.Replace(okRoute, "d: {}", "d: {attributes: {AWS.x: y}}", 1), "reserved"},
		{"string where list", strings.Replace(okRoute, "[{name: copy}]", "copy", 1), "x.yaml:6: routes[0].transforms: expected a list"},
		{"two sidecars", strings.Replace(okRoute, "[{name: copy}]", "[{name: verify-checksum}, {name: verify-checksum, options: {algorithm: md5}}]", 1), "x.yaml:6: routes[0].transforms[1]: a route reads one sidecar: this step wants a md5 one, an earlier step a sha256 one"},
		{"mapping where string", strings.Replace(okRoute, "dataset: d", "dataset: {name: d}", 1), "x.yaml:9: routes[0].dataset: expected a single value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("parsed:\n%s", tt.src)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
	if _, err := Parse("x.yaml", []byte(okRoute)); err != nil {
		t.Fatalf("base route: %v", err)
	}
}

// Options are free-form for the route package (the transform registry checks them) and come
// through with their YAML types.
func TestStepOptions(t *testing.T) {
	c, err := Parse("x.yaml", []byte(strings.Replace(okRoute, "{name: copy}",
		"{name: validate-csv, options: {required_columns: [id, name], columns: 3, header: true, delimiter: \";\"}}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	o := c.Routes[0].Steps[0].Options
	if o["delimiter"] != ";" || o["header"] != true || len(o["required_columns"].([]any)) != 2 {
		t.Errorf("options = %#v", o)
	}
}
