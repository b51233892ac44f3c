package bus

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// RuleStats is one rule's delivery state, for metrics.
type RuleStats struct {
	Rule string
	// Backlog is how many events in the log this rule has not finished with: not yet read,
	// matched and waiting, being delivered or waiting for a retry. Events it does not match
	// count until its reader passes them, which it does as fast as it reads.
	Backlog uint64
	// DeadLetters is how many events wait in dir/dead-letter/<rule>/ for `ferry redrive`.
	DeadLetters int
}

// Stats reports every rule's backlog and dead letters, sorted by rule name.
func (b *Bus) Stats() []RuleStats {
	b.mu.Lock()
	last := b.last
	rules := make([]*rule, 0, len(b.rules))
	for _, r := range b.rules {
		rules = append(rules, r)
	}
	b.mu.Unlock()
	out := make([]RuleStats, 0, len(rules))
	for _, r := range rules {
		st := RuleStats{Rule: r.Name}
		if c := r.cursor(); last > c {
			st.Backlog = last - c
		}
		if ents, err := os.ReadDir(filepath.Join(b.dir, "dead-letter", r.Name)); err == nil {
			for _, e := range ents {
				if strings.HasSuffix(e.Name(), ".json") {
					st.DeadLetters++
				}
			}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rule < out[j].Rule })
	return out
}
