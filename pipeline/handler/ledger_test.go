package handler

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ferrygw/ferry/gateway/s3test"
)

func TestLedgerClaims(t *testing.T) {
	srv := s3test.Start(t)
	l := NewLedger(srv.Client(), srv.Bucket, "")
	now := time.Now()
	l.now = func() time.Time { return now }
	c := ctx(t)
	step := func(name string, want ClaimState) json.RawMessage {
		t.Helper()
		got, res, err := l.Claim(c, name)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("claim %s = %v, want %v", name, got, want)
		}
		return res
	}
	step("a", Claimed)
	step("a", Busy) // a fresh pending claim
	now = now.Add(l.Stale + time.Minute)
	step("a", Claimed) // the claimant died: taken over
	step("a", Busy)    // the taker's claim is fresh
	if err := l.Done(c, "a", map[string]int{"n": 7}); err != nil {
		t.Fatal(err)
	}
	if res := step("a", Done); string(res) != `{"n":7}` {
		t.Errorf("result %s", res)
	}
	if ok, err := l.Has(c, "a"); err != nil || !ok {
		t.Errorf("has a: %v %v", ok, err)
	}
	step("b", Claimed)
	if err := l.Release(c, "b"); err != nil {
		t.Fatal(err)
	}
	step("b", Claimed) // released: a retry claims it
	if ok, err := l.Has(c, "nope"); err != nil || ok {
		t.Errorf("has nope: %v %v", ok, err)
	}
}
