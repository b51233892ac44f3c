package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// Stats shows a rule's backlog while its target is failing, then the dead letter once its
// attempts are spent, and an empty backlog once delivered; another rule is unaffected.
func TestStats(t *testing.T) {
	b := openBus(t, t.TempDir(), testConfig())
	gate := make(chan struct{})
	slow := newRecorder()
	slow.fail = func(call int, key string) error {
		if key == "poison.csv" {
			return errors.New("poison")
		}
		<-gate
		return nil
	}
	fast1 := newRecorder()
	for _, r := range []Rule{
		{Name: "slow", Pattern: `{"detail-type":["Object Created"]}`, Target: slow, Retry: fast},
		{Name: "quick", Pattern: `{"detail-type":["Object Created"]}`, Target: fast1, Retry: fast},
	} {
		if err := b.AddRule(r); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"a.csv", "b.csv", "poison.csv"} {
		if err := b.Put(context.Background(), created(t, k)); err != nil {
			t.Fatal(err)
		}
	}
	stat := func(rule string) RuleStats {
		for _, s := range b.Stats() {
			if s.Rule == rule {
				return s
			}
		}
		t.Fatalf("no stats for rule %s", rule)
		return RuleStats{}
	}
	testtool.Eventually(t, 5*time.Second, "the quick rule's deliveries", func() bool { return stat("quick").Backlog == 0 })
	testtool.Eventually(t, 5*time.Second, "the poison's dead letter", func() bool { return stat("slow").DeadLetters == 1 })
	if s := stat("slow"); s.Backlog != 3 {
		t.Errorf("slow rule while its target blocks: %+v, want a backlog of 3", s)
	}
	close(gate)
	testtool.Eventually(t, 5*time.Second, "the slow rule's backlog to drain", func() bool { return stat("slow").Backlog == 0 })
	if s := stat("quick"); s.DeadLetters != 0 {
		t.Errorf("quick rule: %+v", s)
	}
}
