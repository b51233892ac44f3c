package notify_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/notify"
)

var received = time.Date(2026, 12, 5, 21, 4, 0, 0, time.UTC)

func fileEvent(t *testing.T, marker string, files ...event.FileResult) event.FileEvent {
	t.Helper()
	e, err := event.NewFileEvent(event.FileDetail{ID: "id-1", Route: "demo-csv", Dataset: "demo", User: "ana",
		Bucket: "ferry", Marker: marker, Files: files, Attributes: map[string]string{"team": "x", "status": "spoofed"}},
		"111122223333", "us-east-1", received.Add(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var (
	goodFile = event.FileResult{Key: "incoming/ana/ventas.csv", ETag: "e", Size: 1536, User: "ana", Protocol: "sftp",
		TransferID: "t-7", Received: received, SHA256: strings.Repeat("0f", 32), Records: 82007,
		Outputs: []event.FileOutput{{Key: "processed/ana/ventas.jsonl", Size: 3 << 20}}}
	badFile = event.FileResult{Key: "incoming/ana/malo.csv", ETag: "f", Size: 40, User: "ana", Received: received,
		Reason: "3 fields, the header has 2", Line: 7, Quarantine: "quarantine/ana/malo.csv"}
)

// The built-in notices of each language say what a reader needs: which file, who sent it,
// when, how big, how many records, where the output is, or why it was rejected and at which line.
func TestBuiltinNoticesSayWhatReadersNeed(t *testing.T) {
	type want struct{ subject, sms, body []string }
	cases := []struct {
		lang, kind string
		ev         event.FileEvent
		want       want
	}{
		{"en", notify.KindProcessed, fileEvent(t, "", goodFile), want{
			[]string{"[demo] Processed: ventas.csv from ana"},
			[]string{"ventas.csv processed: 82,007 records."},
			[]string{"s3://ferry/incoming/ana/ventas.csv", "Sent by:   ana over SFTP", "Received:  Sat 5 Dec 2026 21:04 UTC",
				"Size:      1.5 KiB (1,536 bytes)", "Records:   82,007", "Output:    s3://ferry/processed/ana/ventas.jsonl (3.0 MiB)",
				"SHA-256:   " + strings.Repeat("0f", 32), "transfer t-7"}}},
		{"es", notify.KindProcessed, fileEvent(t, "", goodFile), want{
			[]string{"[demo] Procesado: ventas.csv de ana"},
			[]string{"ventas.csv procesado: 82.007 registros."},
			[]string{"Enviado por: ana por SFTP", "Recibido:    sáb 5 dic 2026 21:04 UTC", "Tamaño:      1,5 KiB (1.536 bytes)",
				"Registros:   82.007", "Resultado:   s3://ferry/processed/ana/ventas.jsonl (3,0 MiB)"}}},
		{"en", notify.KindRejected, fileEvent(t, "", badFile), want{
			[]string{"[demo] Rejected: malo.csv (line 7) from ana"},
			[]string{"malo.csv rejected at line 7: 3 fields, the header has 2"},
			[]string{"Why:       3 fields, the header has 2", "Where:     line 7", "s3://ferry/incoming/ana/malo.csv",
				"Kept in:   s3://ferry/quarantine/ana/malo.csv", "Sent by:   ana", "Received:  Sat 5 Dec 2026 21:04 UTC"}}},
		{"es", notify.KindRejected, fileEvent(t, "", badFile), want{
			[]string{"[demo] Rechazado: malo.csv (línea 7) de ana"},
			[]string{"malo.csv rechazado en la línea 7"},
			[]string{"Motivo:      3 fields, the header has 2", "Dónde:       línea 7", "Guardado en: s3://ferry/quarantine/ana/malo.csv"}}},
		{"en", notify.KindBatch, fileEvent(t, "incoming/ana/go.done", goodFile, badFile), want{
			[]string{"[demo] Batch complete from ana: 1 processed, 1 rejected"},
			[]string{"Batch of 2 files complete: 1 processed, 1 rejected."},
			[]string{"Completed by s3://ferry/incoming/ana/go.done.", "processed  ventas.csv", "REJECTED  malo.csv",
				"Why:       3 fields, the header has 2 (line 7)", "Output:    s3://ferry/processed/ana/ventas.jsonl (3.0 MiB)",
				"Kept in:   s3://ferry/quarantine/ana/malo.csv"}}},
		{"es", notify.KindBatch, fileEvent(t, "incoming/ana/go.done", goodFile, badFile), want{
			[]string{"[demo] Lote completo de ana: 1 procesado, 1 rechazado"},
			[]string{"Lote de 2 archivos completo"},
			[]string{"procesado  ventas.csv", "RECHAZADO  malo.csv", "Motivo:      3 fields, the header has 2 (línea 7)"}}},
	}
	for _, c := range cases {
		t.Run(c.lang+"/"+c.kind, func(t *testing.T) {
			n := notify.NewNotice(c.ev)
			if n.Kind != c.kind {
				t.Fatalf("kind %q, want %q", n.Kind, c.kind)
			}
			out, err := notify.MustBuiltin(c.lang).Render(n)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range c.want.subject {
				if out.Subject != w {
					t.Errorf("subject %q, want %q", out.Subject, w)
				}
			}
			for _, w := range c.want.sms {
				if !strings.Contains(out.SMS, w) {
					t.Errorf("sms %q lacks %q", out.SMS, w)
				}
			}
			for _, w := range c.want.body {
				if !strings.Contains(out.Message, w) {
					t.Errorf("body lacks %q:\n%s", w, out.Message)
				}
			}
			if utf8.RuneCountInString(out.SMS) > notify.MaxSMS || len(out.Subject) > notify.MaxSubject {
				t.Errorf("sms %d runes, subject %d bytes", utf8.RuneCountInString(out.SMS), len(out.Subject))
			}
			var js struct {
				Version int
				Kind    string
				Files   []struct {
					Key, Status, Reason string
					Line                int64
				}
			}
			if err := json.Unmarshal(out.JSON, &js); err != nil || js.Version != 1 || js.Kind != c.kind || len(js.Files) != len(c.ev.Detail.Files) {
				t.Errorf("json %s: %v", out.JSON, err)
			}
			a := out.Attributes
			if a["status"] != n.Status || a["kind"] != c.kind || a["team"] != "x" || a["dataset"] != "demo" || a["user"] != "ana" {
				t.Errorf("attributes %v", a)
			}
		})
	}
}

// Overrides are checked like the built-ins, every branch, with the template's own line.
func TestCompileRefusesWhatNoticesLack(t *testing.T) {
	cases := []struct {
		name, text string
		line       int
		msg        string
	}{
		{"processed.subject", "{{.File.Nam}}", 1, "a file has no field or method Nam"},
		{"rejected.body", "Hi\n{{if .File.Line}}\n{{.File.Why}}\n{{end}}", 3, "a file has no field or method Why"},
		{"rejected.body", "{{if false}}{{else}}{{.Sender}}{{end}}", 1, "the notice has no field or method Sender"},
		{"batch.body", "{{range .Files}}\n{{range .Outputs}}{{.Bytes}}{{end}}{{end}}", 2, "an output has no field or method Bytes"},
		{"batch.body", "{{range $i, $f := .Files}}{{$f.Outputs.Key}}{{end}}", 1, "[]notify.Output has no field or method Key"},
		{"batch.body", "{{$first := .File}}\n\n{{$first.Size.Bytes}}", 3, "int64 has no field or method Bytes"},
		{"batch.body", "{{with .File.Outputs}}{{range .}}{{$.Nope}}{{end}}{{end}}", 1, "the notice has no field or method Nope"},
		{"batch.sms", "{{(.File).Nme}}", 1, "a file has no field or method Nme"},
		{"processed.body", "{{.File.Name", 1, "unclosed action"},
		{"processed.body", "ok\n{{size .File.Name}}", 2, "size: want an integer, got string"},
		{"processed.body", "{{nosuchfunc .File}}", 1, `function "nosuchfunc" not defined`},
		{"processed.title", "x", 0, "no such template"},
	}
	for _, c := range cases {
		t.Run(c.name+" "+c.text, func(t *testing.T) {
			_, err := notify.Compile("en", map[string]string{c.name: c.text})
			var te *notify.TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want a *TemplateError", err)
			}
			if te.Name != c.name || te.Line != c.line || !strings.Contains(te.Msg, c.msg) {
				t.Errorf("got %+v, want line %d and %q", te, c.line, c.msg)
			}
		})
	}
	// Fields that exist, methods, functions, variables, range over a map: all accepted.
	ok := `{{.File.Name}} {{if .File.Rejected}}{{.File.Reason}}{{end}} {{range $k, $v := .Attributes}}{{$k}}={{$v}}{{end}}
{{range .Files}}{{.Name}}{{range .Outputs}}{{.Link}}{{end}}{{end}} {{size .File.Size}} {{duration .LinkExpiry}} {{len .Files}}`
	if _, err := notify.Compile("es", map[string]string{"batch.body": ok}); err != nil {
		t.Errorf("valid override refused: %v", err)
	}
	if _, err := notify.Compile("fr", nil); err == nil {
		t.Error("a language without built-ins was accepted")
	}
}

// A batch too large for one SNS message lists as many files as fit and says how many it left out.
func TestRenderShortensHugeBatches(t *testing.T) {
	var files []event.FileResult
	for i := range 4000 {
		f := goodFile
		f.Key = fmt.Sprintf("incoming/ana/%s-%04d.csv", strings.Repeat("n", 60), i)
		files = append(files, f)
	}
	n := notify.NewNotice(fileEvent(t, "incoming/ana/go.done", files...))
	out, err := notify.MustBuiltin("en").Render(n)
	if err != nil {
		t.Fatal(err)
	}
	w, err := out.Wire()
	if err != nil {
		t.Fatalf("wire: %v", err)
	}
	var js struct{ Total, Omitted int }
	if err := json.Unmarshal(out.JSON, &js); err != nil || js.Total != 4000 || js.Omitted == 0 || js.Omitted >= 4000 {
		t.Errorf("json total %d omitted %d: %v", js.Total, js.Omitted, err)
	}
	if !strings.Contains(out.Message, fmt.Sprintf("... and %d more files", js.Omitted)) || w.Size() > notify.MaxMessageBytes {
		t.Errorf("size %d; body tail %q", w.Size(), out.Message[max(0, len(out.Message)-300):])
	}
}

func TestDurationAndSizeWords(t *testing.T) {
	n := notify.Notice{Kind: notify.KindProcessed, LinkExpiry: 48 * time.Hour, File: notify.File{Size: 5 << 30}}
	for lang, want := range map[string]string{"en": "2 days 5.0 GiB 1 hour", "es": "2 días 5,0 GiB 1 hora"} {
		tp, err := notify.Compile(lang, map[string]string{"processed.subject": `{{duration .LinkExpiry}} {{size .File.Size}} {{duration 3600000000000}}`})
		if err != nil {
			t.Fatal(err)
		}
		out, err := tp.Render(n)
		if err != nil || out.Subject != want {
			t.Errorf("%s: %q (%v), want %q", lang, out.Subject, err, want)
		}
	}
}
