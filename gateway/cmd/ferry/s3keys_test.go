package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/iampolicy"
	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// s3Key runs `ferry user s3-key add NAME` and returns the key it printed.
func s3Key(t *testing.T, cfg, name string) (id, secret string) {
	t.Helper()
	r := ferry(t, "", "user", "s3-key", "add", name, "--config", cfg)
	if r.code != 0 {
		t.Fatalf("s3-key add %s: %d %s", name, r.code, r.stderr)
	}
	for line := range strings.Lines(r.stdout) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "AWS_ACCESS_KEY_ID":
			id = v
		case "AWS_SECRET_ACCESS_KEY":
			secret = v
		}
	}
	if id == "" || len(secret) != 40 {
		t.Fatalf("s3-key add printed %q", r.stdout)
	}
	return id, secret
}

func (e *embeddedSystem) client(t *testing.T, id, secret string) *s3.Client {
	t.Helper()
	c, err := s3store.NewClient(context.Background(), s3store.ClientConfig{Endpoint: "http://" + e.s3, Region: "us-east-1",
		PathStyle: true, AccessKey: id, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitKey waits until the running server knows key id (the users file is reloaded on change).
func (e *embeddedSystem) waitKey(t *testing.T, c *s3.Client, home string, known bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("ferry"), Prefix: aws.String(home)})
		unknown := err != nil && strings.Contains(err.Error(), "InvalidAccessKeyId")
		if unknown != known {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("key known=%v not in force after 15s: %v\n%s", known, err, e.logs)
		}
	}
}

// TestS3KeysWithAWSCLI: a partner's own S3 key, made by `ferry user s3-key add`, used by the
// real AWS CLI against the running embedded default: it works in the partner's home with the
// partner's permissions, nowhere else; what it writes is attributed to the partner all the way
// to `ferry trace`; `ferry user s3-key del` revokes it.
func TestS3KeysWithAWSCLI(t *testing.T) {
	awsBin := testtool.Path(t, "aws")
	users := fmt.Sprintf("users:\n"+
		"  - name: alice\n    password_hash: %q\n    home: incoming/alice/\n    permissions: [list, download, upload, delete]\n"+
		"  - name: bob\n    password_hash: %q\n    home: incoming/bob/\n    permissions: [upload]\n"+
		"  - name: demo\n    password_hash: %q\n    home: incoming/demo/\n    permissions: [\"*\"]\n", hash(t, "a"), hash(t, "b"), hash(t, "demo"))
	e := startEmbedded(t, "testdata/inspect-routes.yaml", users)
	aliceID, aliceSecret := s3Key(t, e.cfg, "alice")
	bobID, bobSecret := s3Key(t, e.cfg, "bob")
	data, _ := os.ReadFile(filepath.Join(e.dir, "users.yaml"))
	if strings.Contains(string(data), aliceSecret) || strings.Contains(string(data), bobSecret) || !strings.Contains(string(data), aliceID) {
		t.Fatalf("the users file holds a secret in the clear, or not the key:\n%s", data)
	}
	e.waitKey(t, e.client(t, aliceID, aliceSecret), "incoming/alice/", true)
	e.waitKey(t, e.client(t, bobID, bobSecret), "incoming/bob/", true)
	// ferry check opens every sealed secret: with another key-encryption key, it says which.
	if r := ferry(t, "", "check", "--config", e.cfg); r.code != 0 {
		t.Errorf("check: %d %s", r.code, r.stderr)
	}
	cfgText, _ := os.ReadFile(e.cfg)
	otherKEK := filepath.Join(e.dir, "other.yaml")
	write(t, otherKEK, strings.Replace(string(cfgText), testKEK, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 1))
	if r := ferry(t, "", "check", "--config", otherKEK); r.code != 1 || !strings.Contains(r.stderr, "user alice: S3 key "+aliceID+": s3keys: sealed with another key-encryption key") {
		t.Errorf("check with another key-encryption key: %d %s", r.code, r.stderr)
	}
	e.sftpPut(t, "demo", "demo", map[string]string{"/secret.csv": "a,b\n1,2\n"})

	dir := t.TempDir()
	awsCfg := filepath.Join(dir, "config")
	write(t, awsCfg, "[default]\nregion = us-east-1\n")
	small := filepath.Join(dir, "report.csv")
	write(t, small, "name,qty\nwidget,3\n")
	big := filepath.Join(dir, "big.bin")
	blob := make([]byte, 9<<20) // past the CLI's 8 MiB multipart threshold
	rand.Read(blob)
	if err := os.WriteFile(big, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	awsAs := func(id, secret string, args ...string) (string, error) {
		cmd := exec.CommandContext(t.Context(), awsBin, append([]string{"--endpoint-url", "http://" + e.s3}, args...)...)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "AWS_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "AWS_ACCESS_KEY_ID="+id, "AWS_SECRET_ACCESS_KEY="+secret, "AWS_CONFIG_FILE="+awsCfg,
			"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "none"), "AWS_PAGER=")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	cases := []struct {
		who, name string
		args      []string
		ok        bool
		out       string // in the output
	}{
		{"alice", "upload into her home", []string{"s3", "cp", small, "s3://ferry/incoming/alice/report.csv"}, true, ""},
		{"alice", "multipart upload into her home", []string{"s3", "cp", big, "s3://ferry/incoming/alice/big.bin"}, true, ""},
		{"alice", "list her home", []string{"s3", "ls", "s3://ferry/incoming/alice/"}, true, "report.csv"},
		{"alice", "download her file", []string{"s3", "cp", "s3://ferry/incoming/alice/report.csv", "-"}, true, "widget,3"},
		{"alice", "overwrite (not permitted)", []string{"s3", "cp", small, "s3://ferry/incoming/alice/report.csv"}, false, "AccessDenied"},
		{"alice", "upload into another home", []string{"s3", "cp", small, "s3://ferry/incoming/demo/x.csv"}, false, "AccessDenied"},
		{"alice", "download from another home", []string{"s3", "cp", "s3://ferry/incoming/demo/secret.csv", "-"}, false, "403"},
		{"alice", "list the parent", []string{"s3", "ls", "s3://ferry/incoming/"}, false, "AccessDenied"},
		{"alice", "list the buckets", []string{"s3", "ls"}, false, "AccessDenied"},
		{"alice", "delete in another home", []string{"s3", "rm", "s3://ferry/incoming/demo/secret.csv"}, false, "AccessDenied"},
		{"alice", "delete in her home", []string{"s3", "rm", "s3://ferry/incoming/alice/big.bin"}, true, ""},
		{"bob", "upload (his only permission)", []string{"s3", "cp", small, "s3://ferry/incoming/bob/b.csv"}, true, ""},
		{"bob", "list his own home", []string{"s3", "ls", "s3://ferry/incoming/bob/"}, false, "AccessDenied"},
		{"bob", "download his own file", []string{"s3", "cp", "s3://ferry/incoming/bob/b.csv", "-"}, false, "403"},
	}
	keys := map[string][2]string{"alice": {aliceID, aliceSecret}, "bob": {bobID, bobSecret}}
	for _, c := range cases {
		out, err := awsAs(keys[c.who][0], keys[c.who][1], c.args...)
		if (err == nil) != c.ok || !strings.Contains(out, c.out) {
			t.Errorf("%s: %s: aws %s: err %v, output:\n%s", c.who, c.name, strings.Join(c.args, " "), err, out)
		}
	}
	admin := e.client(t, "ferry", "ferrysecret")
	if out, err := admin.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String("ferry"), Key: aws.String("incoming/demo/secret.csv")}); err != nil {
		t.Errorf("a refused delete removed the file: %v", err)
	} else {
		out.Body.Close()
	}
	head, err := admin.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String("ferry"), Key: aws.String("incoming/alice/report.csv")})
	if err != nil || head.Metadata["ferry-user"] != "alice" || head.Metadata["ferry-protocol"] != "s3" {
		t.Errorf("report.csv attribution: %v %v", head, err)
	}

	// The pipeline sees alice as the uploader; `ferry trace` tells it.
	var tr result
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		tr = ferry(t, "", "trace", "--config", e.cfg, "incoming/alice/report.csv")
		if strings.Contains(tr.stdout, "Notice     sent") || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{"by alice over S3 from 127.0.0.1:", "requester alice", "processed/alice/report.jsonl"} {
		if !strings.Contains(tr.stdout, want) {
			t.Errorf("trace lacks %q:\n%s%s", want, tr.stdout, tr.stderr)
		}
	}

	if r := ferry(t, "", "user", "list", "--config", e.cfg); !strings.Contains(r.stdout, "password,1 S3 key") {
		t.Errorf("user list: %s", r.stdout)
	}
	if r := ferry(t, "", "user", "s3-key", "list", "alice", "--config", e.cfg); r.code != 0 || !strings.Contains(r.stdout, aliceID) {
		t.Errorf("s3-key list: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := ferry(t, "", "user", "s3-key", "del", "alice", aliceID, "--config", e.cfg); r.code != 0 {
		t.Fatalf("s3-key del: %d %s", r.code, r.stderr)
	}
	e.waitKey(t, e.client(t, aliceID, aliceSecret), "incoming/alice/", false)
	if out, err := awsAs(aliceID, aliceSecret, "s3", "ls", "s3://ferry/incoming/alice/"); err == nil || !strings.Contains(out, "InvalidAccessKeyId") {
		t.Errorf("a deleted key still works: %v %s", err, out)
	}
	if r := ferry(t, "", "user", "s3-key", "del", "alice", aliceID, "--config", e.cfg); r.code != 1 || !strings.Contains(r.stderr, "no such S3 access key") {
		t.Errorf("deleting it again: %d %s", r.code, r.stderr)
	}
}

// TestS3KeysUsersFileInS3: the users file kept in the bucket (s3://…): `ferry user add` and
// `ferry user s3-key add` edit it with conditional writes, every replica polls it, and the key
// works, confined, once it is read.
func TestS3KeysUsersFileInS3(t *testing.T) {
	e := startEmbedded(t, "testdata/inspect-routes.yaml", "")
	if r := ferry(t, "pw\n", "user", "add", "carol", "--config", e.cfg, "--home", "incoming/carol/", "--perm", "list,upload,overwrite", "--password-stdin"); r.code != 0 {
		t.Fatalf("user add: %d %s", r.code, r.stderr)
	}
	id, secret := s3Key(t, e.cfg, "carol")
	carol := e.client(t, id, secret)
	e.waitKey(t, carol, "incoming/carol/", true)
	ctx := t.Context()
	for key, ok := range map[string]bool{"incoming/carol/a.csv": true, "incoming/dave/a.csv": false, ".ferry/users.yaml": false} {
		_, err := carol.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("ferry"), Key: aws.String(key), Body: strings.NewReader("x\n")})
		if (err == nil) != ok {
			t.Errorf("put %s: %v", key, err)
		}
	}
	if _, err := carol.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ferry"), Key: aws.String(".ferry/users.yaml")}); err == nil {
		t.Error("carol read the users file")
	}
	// Without the key-encryption key, no key can be made.
	noKEK := filepath.Join(t.TempDir(), "ferry.yaml")
	cfg, _ := os.ReadFile(e.cfg)
	write(t, noKEK, strings.Replace(string(cfg), "key_encryption_key: "+fmt.Sprintf("%q", testKEK), `key_encryption_key: ""`, 1))
	t.Setenv(kekEnv, "")
	if r := ferry(t, "", "user", "s3-key", "add", "carol", "--config", noKEK); r.code != 1 || !strings.Contains(r.stderr, "no key-encryption key") {
		t.Errorf("s3-key add without a key-encryption key: %d %s", r.code, r.stderr)
	}

	pol := ferry(t, "", "user", "s3-policy", "carol", "--config", e.cfg)
	var p iampolicy.Policy
	if err := json.Unmarshal([]byte(pol.stdout), &p); err != nil || pol.code != 0 {
		t.Fatalf("s3-policy: %d %v %s %s", pol.code, err, pol.stdout, pol.stderr)
	}
	if len(p.Statement) != 2 || p.Statement[0].Resource[0] != "arn:aws:s3:::ferry" || p.Statement[1].Resource[0] != "arn:aws:s3:::ferry/incoming/carol/*" {
		t.Errorf("policy %s", pol.stdout)
	}
}

// TestS3KeyCommandsOnS3: an administrator's `ferry user s3-key` and `ferry user s3-policy` on a
// users file kept in a real S3 server (versitygw), with the key-encryption key from the
// environment: a concurrent edit is refused and nothing is written, the retry lands.
func TestS3KeyCommandsOnS3(t *testing.T) {
	srv := s3test.Start(t)
	const key = ".ferry/users.yaml"
	url := "s3://" + srv.Bucket + "/" + key
	src := users.S3Object(srv.Client(), srv.Bucket, key)
	h, _ := users.HashPassword("pw")
	if err := users.Add(context.Background(), src, users.Entry{Name: "alice", PasswordHash: h, Home: "incoming/alice/",
		Permissions: []string{"upload", "list"}}); err != nil {
		t.Fatal(err)
	}
	other := func() {
		if err := users.Add(context.Background(), src, users.Entry{Name: "olga", PasswordHash: h, Home: "olga/", Permissions: []string{"list"}}); err != nil {
			t.Errorf("the other admin's edit: %v", err)
		}
	}
	cfg := s3Config(t, srv, srv.Endpoint, key)
	racing := s3Config(t, srv, racingProxy(t, srv.Endpoint, key, other), key)
	t.Setenv(kekEnv, testKEK)

	r := ferry(t, "", "user", "s3-key", "add", "alice", "--config", racing)
	if r.code != 1 || !strings.Contains(r.stderr, "changed by someone else") || strings.Contains(r.stdout, "AWS_SECRET_ACCESS_KEY") {
		t.Errorf("s3-key add over a concurrent edit: %d %q %q", r.code, r.stdout, r.stderr)
	}
	id, _ := s3Key(t, cfg, "alice")
	list, _, err := users.Read(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range list {
		got = append(got, fmt.Sprintf("%s:%d", u.Name, len(u.S3Keys)))
	}
	if strings.Join(got, ",") != "alice:1,olga:0" {
		t.Errorf("users in S3: %v", got)
	}
	if r := ferry(t, "", "user", "s3-key", "list", "alice", "--users", url, "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, id) {
		t.Errorf("s3-key list: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := ferry(t, "", "check", "--config", cfg, "--fetch-users"); r.code != 0 || !strings.Contains(r.stderr, "are for the embedded S3 endpoint, which this config does not run") {
		t.Errorf("check: %d %s %s", r.code, r.stdout, r.stderr)
	}
	pol := ferry(t, "", "user", "s3-policy", "alice", "--config", cfg, "--bucket", "acme-ferry-drop")
	if pol.code != 0 || !strings.Contains(pol.stdout, `"arn:aws:s3:::acme-ferry-drop/incoming/alice/*"`) || !strings.Contains(pol.stdout, `"s3:if-none-match": "true"`) {
		t.Errorf("s3-policy: %d %s %s", pol.code, pol.stdout, pol.stderr)
	}
	if r := ferry(t, "", "user", "s3-key", "del", "alice", id, "--config", cfg); r.code != 0 {
		t.Errorf("s3-key del: %d %s", r.code, r.stderr)
	}
	if r := ferry(t, "", "user", "s3-policy", "olga", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, `"arn:aws:s3:::`+srv.Bucket+`"`) {
		t.Errorf("s3-policy with the config's bucket: %d %s %s", r.code, r.stdout, r.stderr)
	}
}
