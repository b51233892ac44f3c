package route

import (
	"strings"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/notify"
)

const templatedYAML = `datasets:
  d:
    language: es
    download_links: {expires: 24h}
    templates:
      rejected:
        subject: "Rechazo: {{.File.Nombre}}"
        body: |
          Hola,
          {{if .File.Line}}línea {{.File.Lin}}{{end}}
      batch:
        sms: "{{range .Files}}{{.Outputs.Size}}{{end}}"
        body: >-
          {{range .Files}}
          {{.Name}
      processed:
        body: "{{size .File.Name}}"
routes:
  - name: r
    match: {prefix: in/}
    transforms: [{name: copy}]
    output: "out/{name}"
    quarantine: "q/"
    dataset: d
`

// A dataset's templates are checked when the file loads, every branch against the notice's
// fields, and each problem is reported at its own line of the file: the key's line for a
// one-line template, the line inside a block scalar for one written as a block.
func TestDatasetTemplateProblems(t *testing.T) {
	_, err := Parse("x.yaml", []byte(templatedYAML))
	if err == nil {
		t.Fatal("parsed")
	}
	want := []string{
		`x.yaml:7: datasets.d.templates.rejected.subject: template rejected.subject: a file has no field or method Nombre`,
		`x.yaml:10: datasets.d.templates.rejected.body: template rejected.body: a file has no field or method Lin`,
		`x.yaml:12: datasets.d.templates.batch.sms: template batch.sms: []notify.Output has no field or method Size`,
		`x.yaml:14: datasets.d.templates.batch.body: template batch.body:`, // folded: its first line
		`x.yaml:17: datasets.d.templates.processed.body: template processed.body:`,
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d:\n%s\nwant it to start with:\n%s", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[4], "size: want an integer, got string") {
		t.Errorf("a function given the wrong type is found by running the template: %s", lines[4])
	}
}

func TestDatasetTemplates(t *testing.T) {
	src := strings.NewReplacer(`{{.File.Nombre}}`, `{{.File.Name}}`, `{{.File.Lin}}`, `{{.File.Line}}`,
		`{{.Outputs.Size}}`, `{{len .Outputs}}`, "{{.Name}\n", "{{.Name}}{{end}}\n", `{{size .File.Name}}`, `{{size .File.Size}}`).Replace(templatedYAML)
	c, err := Parse("x.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Datasets["d"]
	if d.LinkExpiry != 24*time.Hour || d.Templates == nil || d.Templates.Language() != "es" {
		t.Fatalf("dataset %+v", d)
	}
	n := notify.Notice{Kind: notify.KindRejected, Status: notify.KindRejected, Dataset: "d",
		File: notify.File{Name: "malo.csv", Line: 7, Reason: "x"}}
	n.Files = []notify.File{n.File}
	out, err := d.Templates.Render(n)
	if err != nil {
		t.Fatal(err)
	}
	if out.Subject != "Rechazo: malo.csv" || out.Message != "Hola,\nlínea 7\n" || !strings.Contains(out.SMS, "malo.csv rechazado en la línea 7") {
		t.Errorf("rendered %+v", out)
	}
	// A dataset without templates or language gets the English built-ins, and no links.
	c, err = Parse("x.yaml", []byte(okRoute))
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Datasets["d"]; d.Templates == nil || d.Templates.Language() != "en" || d.LinkExpiry != 0 {
		t.Errorf("default dataset %+v", d)
	}
}
