package infra_test

import (
	"strings"
	"testing"

	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/tracking"
)

// TestStatusRecordsExpireWithTheLedger: every prefix the per-file status records (`ferry
// status`, `ferry trace`) are written under is inside the prefix the storage template's
// expire-ledger rule expires, so they never outlive the ledger, and outside the routed prefix,
// so they never reach the pipeline (TestPatterns judges their events with both matchers).
func TestStatusRecordsExpireWithTheLedger(t *testing.T) {
	tp := loadTemplate(t, "storage.yaml")
	c := newEvalCtx(t, tp, childParams(t, "Storage", nil))
	rule := lifecycleRules(t, c.evalResource(t, tp, "Bucket"))["expire-ledger"]
	expired, _ := at(rule, "Prefix").(string)
	if expired == "" || at(rule, "Status") != "Enabled" {
		t.Fatalf("expire-ledger rule: %v", rule)
	}
	for _, p := range tracking.New("ferry-infra-test", ledger.DefaultPrefix).Prefixes() {
		if !strings.HasPrefix(p, expired) {
			t.Errorf("status records under %q are not expired by the rule on %q", p, expired)
		}
		if strings.HasPrefix(p, "incoming/") {
			t.Errorf("status records under %q are in the routed prefix", p)
		}
	}
}
