package ledger

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

func TestLedgerClaims(t *testing.T) {
	srv := s3test.Start(t)
	l := New(srv.Client(), srv.Bucket, "")
	now := time.Now()
	l.now = func() time.Time { return now }
	c := context.Background() // claims without a deadline: Stale decides (the mocked clock)
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

// A claim made under a deadline (a Lambda invocation, a bus delivery) is stale as soon as that
// deadline has passed: its claimant cannot still be running. Without one, Stale applies.
func TestLedgerClaimUntilDeadline(t *testing.T) {
	srv := s3test.Start(t)
	l := New(srv.Client(), srv.Bucket, "")
	now := time.Now()
	l.now = func() time.Time { return now }
	start := now
	holder, cancel := context.WithDeadline(context.Background(), now.Add(time.Minute))
	defer cancel()
	claim := func(c context.Context, name string, want ClaimState) {
		t.Helper()
		if got, _, err := l.Claim(c, name); err != nil || got != want {
			t.Fatalf("claim %s at +%v = %v, %v; want %v", name, now.Sub(start), got, err, want)
		}
	}
	claim(holder, "d", Claimed)
	claim(context.Background(), "n", Claimed)
	now = now.Add(time.Minute + claimSkew - time.Second)
	claim(context.Background(), "d", Busy) // the holder may still be running
	now = now.Add(2 * time.Second)
	claim(context.Background(), "d", Claimed) // past its deadline: gone, taken over
	claim(context.Background(), "n", Busy)    // no deadline: Stale (20 min) applies
	now = now.Add(l.Stale)
	claim(context.Background(), "n", Claimed)
}

// A retry finding the claim of a delivery that died waits for that claim's deadline and takes
// it over, when its own deadline leaves room; otherwise it gives up after the usual wait.
func TestLedgerClaimWaitTakesOverDeadClaimant(t *testing.T) {
	srv := s3test.Start(t)
	l := New(srv.Client(), srv.Bucket, "")
	l.Skew = 0
	dead, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if got, _, err := l.Claim(dead, "x"); err != nil || got != Claimed {
		t.Fatalf("first claim %v %v", got, err)
	}
	// It crashes: no Done, no Release.

	short, cancel2 := context.WithTimeout(context.Background(), 5*time.Second) // < deadline + claimReserve
	defer cancel2()
	start := time.Now()
	if got, _, err := l.ClaimWait(short, "x", 100*time.Millisecond); err != nil || got != Busy {
		t.Fatalf("short retry = %v %v, want Busy", got, err)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("a retry without room waited %v", d)
	}

	long, cancel3 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel3()
	got, _, err := l.ClaimWait(long, "x", 100*time.Millisecond)
	if err != nil || got != Claimed {
		t.Fatalf("retry = %v %v, want Claimed", got, err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 10*time.Second {
		t.Errorf("took over after %v; the dead claim's deadline was 1s", d)
	}
}

// Release and Done record a handler's outcome even when its context has just ended.
func TestLedgerWritesOutliveCancel(t *testing.T) {
	srv := s3test.Start(t)
	l := New(srv.Client(), srv.Bucket, "")
	c, cancel := context.WithCancel(context.Background())
	for _, name := range []string{"r", "d"} {
		if got, _, err := l.Claim(c, name); err != nil || got != Claimed {
			t.Fatalf("claim %s: %v %v", name, got, err)
		}
	}
	cancel()
	if err := l.Release(c, "r"); err != nil {
		t.Fatalf("release after cancel: %v", err)
	}
	if err := l.Done(c, "d", "ok"); err != nil {
		t.Fatalf("done after cancel: %v", err)
	}
	bg := context.Background()
	if got, _, err := l.Claim(bg, "r"); err != nil || got != Claimed {
		t.Errorf("released claim: %v %v, want Claimed", got, err)
	}
	if got, _, err := l.Claim(bg, "d"); err != nil || got != Done {
		t.Errorf("done claim: %v %v, want Done", got, err)
	}
}
