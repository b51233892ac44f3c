package notify_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/ferrygw/ferry/pipeline/internal/fakeaws"
	"github.com/ferrygw/ferry/pipeline/notify"
)

func snsClient(url string) *sns.Client {
	return sns.New(sns.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(url),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
	})
}

func TestSNSPublisherWireFormat(t *testing.T) {
	srv := fakeaws.Start(t)
	const def = "arn:aws:sns:us-east-1:111122223333:ferry"
	const fifo = "arn:aws:sns:us-east-1:111122223333:sales.fifo"
	p, err := notify.NewSNSPublisher(snsClient(srv.URL), def, map[string]string{"sales": fifo})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tests := []struct {
		n           notify.Notification
		wantTopic   string
		wantGroup   string
		wantSubject string // "" = n.Subject unchanged
	}{
		{notify.Notification{ID: "a", Dataset: "demo", Subject: "report.csv arrived", Message: "body & more",
			Attributes: map[string]string{"user": "alice", "status": "processed", "empty": ""}}, def, "", ""},
		{notify.Notification{ID: "b", Dataset: "sales", Subject: "s", Message: "m",
			Attributes: map[string]string{"status": "rejected"}}, fifo, "sales", ""},
		// SNS refuses non-ASCII and control characters in subjects: accents go; the message keeps them.
		{notify.Notification{ID: "c", Dataset: "demo", Subject: " état\tfinal.csv from zoë", Message: "état from zoë"},
			def, "", "etat final.csv from zoe"},
	}
	for i, tt := range tests {
		if err := p.Publish(ctx, tt.n); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		got := srv.SNS()[i]
		wantSubject := tt.n.Subject
		if tt.wantSubject != "" {
			wantSubject = tt.wantSubject
		}
		if got.TopicArn != tt.wantTopic || got.Subject != wantSubject || got.Message != tt.n.Message {
			t.Errorf("publish %d: got %+v", i, got)
		}
		if got.MessageGroupID != tt.wantGroup || (tt.wantGroup != "") != (got.MessageDeduplicationID != "") {
			t.Errorf("publish %d: fifo fields %q %q", i, got.MessageGroupID, got.MessageDeduplicationID)
		}
		if got.Attributes["dataset"] != tt.n.Dataset {
			t.Errorf("publish %d: dataset attribute %q", i, got.Attributes["dataset"])
		}
		for k, v := range tt.n.Attributes {
			if g, ok := got.Attributes[k]; v == "" && ok || v != "" && g != v {
				t.Errorf("publish %d: attribute %s = %q (present %v), want %q", i, k, g, ok, v)
			}
		}
	}
}

func TestSNSPublisherErrors(t *testing.T) {
	srv := fakeaws.Start(t)
	if _, err := notify.NewSNSPublisher(snsClient(srv.URL), "", nil); err == nil {
		t.Error("no topic accepted")
	}
	p, err := notify.NewSNSPublisher(snsClient(srv.URL), "arn:aws:sns:us-east-1:1:t", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Publish(ctx, notify.Notification{Dataset: "d", Subject: strings.Repeat("x", notify.MaxSubject+1), Message: "m"}); err == nil {
		t.Error("over-long subject accepted")
	}
	srv.FailSNS(10) // more than the SDK's own retries
	if err := p.Publish(ctx, notify.Notification{ID: "x", Dataset: "d", Subject: "s", Message: "m"}); err == nil {
		t.Error("a failing SNS call returned no error")
	}
	if n := len(srv.SNS()); n != 0 {
		t.Errorf("%d messages recorded", n)
	}
}

func TestTruncateSubject(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"short", "short"},
		{strings.Repeat("a", notify.MaxSubject), strings.Repeat("a", notify.MaxSubject)},
		{strings.Repeat("a", notify.MaxSubject+1), strings.Repeat("a", notify.MaxSubject-3) + "..."},
		// a 2-byte rune straddling the cut is dropped whole, never split
		{strings.Repeat("a", notify.MaxSubject-4) + "éééé", strings.Repeat("a", notify.MaxSubject-4) + "..."},
	} {
		got := notify.TruncateSubject(tt.in)
		if got != tt.want || len(got) > notify.MaxSubject || !utf8.ValidString(got) {
			t.Errorf("TruncateSubject(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// A notice with a short line and JSON goes out as MessageStructure "json": the readable text to
// e-mail, the line to SMS, the JSON as the default for everyone else (https, sqs, lambda).
func TestSNSPublisherPerProtocol(t *testing.T) {
	srv := fakeaws.Start(t)
	p, err := notify.NewSNSPublisher(snsClient(srv.URL), "arn:aws:sns:us-east-1:1:t", nil)
	if err != nil {
		t.Fatal(err)
	}
	n := notify.Notification{ID: "n1", Dataset: "demo", Subject: "[demo] Rechazado: línea 7 — ¿qué pasó?",
		Message: "Motivo: 3 campos\n", SMS: "malo.csv rechazado", JSON: []byte(`{"kind":"rejected","files":[{"line":7}]}`),
		Attributes: map[string]string{"status": "rejected"}}
	if err := p.Publish(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	got := srv.SNS()[0]
	if got.MessageStructure != "json" || got.Subject != "[demo] Rechazado: linea 7 - que paso?" {
		t.Errorf("structure %q subject %q", got.MessageStructure, got.Subject)
	}
	want := map[string]string{"default": string(n.JSON), "email": n.Message, "sms": n.SMS}
	if len(got.Protocols) != len(want) {
		t.Errorf("protocols %v", got.Protocols)
	}
	for k, v := range want {
		if got.Protocols[k] != v {
			t.Errorf("protocol %s: %q, want %q", k, got.Protocols[k], v)
		}
	}
	w, err := n.Wire()
	if err != nil {
		t.Fatal(err)
	}
	d := w.Deliveries()
	if d["email"] != n.Message || d["sms"] != n.SMS || d["https"] != string(n.JSON) || d["sqs"] != string(n.JSON) || d["lambda"] != string(n.JSON) {
		t.Errorf("deliveries %v", d)
	}
	// Text only: a plain message, every protocol gets it.
	plain := notify.Notification{Dataset: "d", Subject: "s", Message: "m"}
	if w, err := plain.Wire(); err != nil || w.Structure != "" || w.Message != "m" || w.Deliveries()["sqs"] != "m" {
		t.Errorf("plain wire %+v %v", w, err)
	}
	if _, err := (notify.Notification{Dataset: "d", Subject: "s", Message: "m", JSON: []byte("{bad")}).Wire(); err == nil {
		t.Error("invalid JSON accepted")
	}
	huge := notify.Notification{Dataset: "d", Subject: "s", Message: strings.Repeat("x", notify.MaxMessageBytes)}
	if _, err := huge.Wire(); !errors.Is(err, notify.ErrTooLarge) {
		t.Errorf("oversized message: %v", err)
	}
}

// The test endpoint checks MessageStructure "json" as SNS does, so the tests above cannot pass
// with a message SNS would refuse.
func TestFakeSNSChecksMessageStructure(t *testing.T) {
	srv := fakeaws.Start(t)
	client := snsClient(srv.URL)
	for _, tt := range []struct{ msg, want string }{
		{`{"email":"x"}`, "No default entry"},
		{`["default"]`, "failed to parse"},
		{`{"default":"x",`, "failed to parse"},
		{`{"default":{"nested":1}}`, `"default" is not a string`},
		{`{"default":"x","sqs":2}`, `"sqs" is not a string`},
		{`{"default":"` + strings.Repeat("x", 256<<10) + `"}`, "too long"},
	} {
		_, err := client.Publish(context.Background(), &sns.PublishInput{TopicArn: aws.String("arn:aws:sns:us-east-1:1:t"),
			Message: aws.String(tt.msg), MessageStructure: aws.String("json")})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%.40s: %v, want %q", tt.msg, err, tt.want)
		}
	}
	if n := len(srv.SNS()); n != 0 {
		t.Errorf("%d refused messages recorded", n)
	}
}

func TestWireSubject(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"Größe «über» 5 €", `Grosse "uber" 5 EUR`},
		{"¡Año nuevo! ¿Sí?", "Ano nuevo! Si?"},
		{"line\nbreak\tand tab", "line break and tab"},
		{"日本", "??"},
		{"   ", "Notification"},
		{strings.Repeat("ß", 60), strings.Repeat("s", notify.MaxSubject-3) + "..."},
	} {
		if got := notify.WireSubject(tt.in); got != tt.want || len(got) > notify.MaxSubject {
			t.Errorf("WireSubject(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
