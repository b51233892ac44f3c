package notify_test

import (
	"context"
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
		// SNS refuses non-ASCII and control characters in subjects; the message keeps them.
		{notify.Notification{ID: "c", Dataset: "demo", Subject: " état\tfinal.csv from zoë", Message: "état from zoë"},
			def, "", "?tat final.csv from zo?"},
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
