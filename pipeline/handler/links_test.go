package handler

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// expiringCreds are temporary credentials, as a Lambda's role gives.
type expiringCreds struct {
	key, secret string
	expires     time.Time
}

func (c expiringCreds) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: c.key, SecretAccessKey: c.secret, CanExpire: !c.expires.IsZero(), Expires: c.expires}, nil
}

// TestNotifyDownloadLinks: a dataset with download_links gets, for each output, a pre-signed GET
// that opens the output with no credentials at all, valid for the dataset's expiry — or until
// the signing credentials expire, when that is sooner, and the notice states that time. The
// dataset is Spanish: the notice is too.
func TestNotifyDownloadLinks(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		name       string
		credsLeft  time.Duration // 0: credentials that do not expire
		wantExpiry time.Duration
	}{
		{"static credentials", 0, 24 * time.Hour},
		{"role credentials expiring in 2h", 2 * time.Hour, 2 * time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			creds := expiringCreds{key: e.srv.AccessKey, secret: e.srv.Secret}
			if tt.credsLeft > 0 {
				creds.expires = time.Now().Add(tt.credsLeft)
			}
			nh, fake := newNotify(t, e)
			nh.cfg.Presigner = s3.NewPresignClient(e.s3, func(o *s3.PresignOptions) {
				o.ClientOptions = append(o.ClientOptions, func(o *s3.Options) { o.Credentials = creds })
			})
			nh.cfg.Credentials = creds
			before := len(e.events.all())
			key := "linked/ana/" + strings.ReplaceAll(tt.name, " ", "-") + ".csv"
			e.handle(e.upload(key, goodCSV, nil))
			evs := rawEvents(t, e)
			if len(evs) != before+1 {
				t.Fatalf("%d events", len(evs))
			}
			if err := nh.Handle(ctx(t), evs[before]); err != nil {
				t.Fatal(err)
			}
			msg := fake.SNS()[0]
			var js struct {
				Files []struct {
					Outputs []struct {
						Key, Link   string
						LinkExpires time.Time `json:"link_expires"`
					}
				}
			}
			if err := json.Unmarshal([]byte(msg.Protocols["default"]), &js); err != nil || len(js.Files) != 1 || len(js.Files[0].Outputs) != 1 {
				t.Fatalf("json %s: %v", msg.Protocols["default"], err)
			}
			o := js.Files[0].Outputs[0]
			if left := time.Until(o.LinkExpires); left > tt.wantExpiry || left < tt.wantExpiry-time.Minute {
				t.Errorf("link expires in %s, want %s", left, tt.wantExpiry)
			}
			u, err := url.Parse(o.Link)
			if err != nil || u.Query().Get("X-Amz-Signature") == "" {
				t.Fatalf("link %q: %v", o.Link, err)
			}
			if got, _ := time.ParseDuration(u.Query().Get("X-Amz-Expires") + "s"); got > tt.wantExpiry || got < tt.wantExpiry-time.Minute {
				t.Errorf("X-Amz-Expires %s, want %s", got, tt.wantExpiry)
			}
			email := msg.Protocols["email"]
			if !strings.Contains(email, "Descarga:    "+o.Link) || !strings.Contains(email, "el enlace funciona hasta el") {
				t.Errorf("e-mail does not give the link and its expiry:\n%s", email)
			}
			resp, err := http.Get(o.Link) // no credentials: the signature is the authorization
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want, _, _ := e.get(o.Key)
			if resp.StatusCode != http.StatusOK || string(body) != want {
				t.Errorf("GET link: %s %q, want the output %q", resp.Status, body, want)
			}
		})
	}
}
