package s3server

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no credentials", Config{DataDir: dir}, "access key and secret"},
		{"no directory", Config{AccessKey: "a", Secret: "b"}, "empty data directory"},
		{"bad bucket", Config{DataDir: dir, AccessKey: "a", Secret: "b", Buckets: []string{"Not_Valid"}}, "Not_Valid"},
	} {
		if _, err := New(tc.cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.want)
		}
	}
}

func TestRestartKeepsData(t *testing.T) {
	h := newHarness(t)
	h.put("kept/file", "still here")
	// One process per directory.
	if _, err := New(Config{DataDir: h.dir, AccessKey: testKey, Secret: testSecret}, nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second server on the same directory: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	h2 := &harness{t: t, dir: h.dir}
	h2.start(Config{DataDir: h.dir, AccessKey: testKey, Secret: testSecret, Buckets: []string{testBucket}})
	if got := h2.get("kept/file"); got != "still here" {
		t.Errorf("after restart: %q", got)
	}
}
