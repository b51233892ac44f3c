package bench

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// sample is one run of one workload on one server.
type sample struct {
	measured
	amount float64 // bytes or items
	err    error   // the server failed this run (the peer only: Ferry's failures stop the run)
}

// cell is a server's summary for one workload: the median of its successful runs' rates and
// CPU costs, and the highest of their peak RSS; failed counts the others, and err is the first
// failure.
type cell struct {
	rate   float64 // MB/s (10^6 bytes/s) or items/s
	cpu    float64 // CPU-seconds per GiB, or per 1000 items
	peak   int64   // bytes
	runs   int
	failed int
	err    error
}

func summarize(runs []sample, bytes bool) cell {
	var rates, cpus []float64
	c := cell{runs: len(runs)}
	for _, s := range runs {
		if s.err != nil {
			c.failed++
			if c.err == nil {
				c.err = s.err
			}
			continue
		}
		per := s.amount / 1000 // thousands of items
		rate := s.amount / s.d.Seconds()
		if bytes {
			per = s.amount / (1 << 30)
			rate /= 1e6
		}
		rates = append(rates, rate)
		cpus = append(cpus, s.cpu.Seconds()/per)
		c.peak = max(c.peak, s.peak)
	}
	c.rate, c.cpu = median(rates), median(cpus)
	return c
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type peersRow struct {
	name  string
	unit  string
	bytes bool
	cells []cell // in the table's peer order: Ferry, rclone
}

// ratio is Ferry's rate over rclone's, when both have one.
func (r peersRow) ratio() (float64, bool) {
	if len(r.cells) != 2 || r.cells[0].rate <= 0 || r.cells[1].rate <= 0 {
		return 0, false
	}
	return r.cells[0].rate / r.cells[1].rate, true
}

type peersTable struct {
	cfg        peersConfig
	peers      []string
	rows       []peersRow
	loadBefore string
	loadAfter  string
	elapsed    time.Duration
}

// String is the table `make bench-peers` prints.
func (t *peersTable) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Ferry vs rclone serve %s, same versitygw, same clients; median of %d runs, interleaved; %s\n",
		rcloneVersion, t.cfg.runs, machine())
	fmt.Fprintf(&b, "load average %s before, %s after; %v\n", t.loadBefore, t.loadAfter, t.elapsed.Round(time.Second))
	fmt.Fprintf(&b, "Rates in MB/s = 10^6 bytes/s. Measured inside the client session, login excluded (the concurrent rows\n")
	fmt.Fprintf(&b, "include their logins): time; the server process's utime+stime per GiB, or per 1000 files or entries;\n")
	fmt.Fprintf(&b, "its peak RSS (VmHWM, reset before each run), the highest of the runs.\n\n")
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "workload\tunit\tFerry\trclone\tFerry ÷ rclone\tCPU Ferry\tCPU rclone\tCPU ÷\tRSS Ferry MiB\tRSS rclone MiB\n")
	var notes []string
	for _, r := range t.rows {
		cpuUnit := "s/1k"
		if r.bytes {
			cpuUnit = "s/GiB"
		}
		f, rc := r.cells[0], r.cells[1]
		ratio, cpuRatio := "—", "—"
		if v, ok := r.ratio(); ok {
			ratio = fmt.Sprintf("%.2f", v)
		}
		if f.rate > 0 && rc.rate > 0 && rc.cpu > 0 {
			cpuRatio = fmt.Sprintf("%.2f", f.cpu/rc.cpu)
		}
		cells := make([]string, 0, 6)
		for i, c := range []cell{f, rc} {
			mark := ""
			if c.failed > 0 {
				notes = append(notes, fmt.Sprintf("[%d] %s, %s: %d of %d runs failed; the first: %v", len(notes)+1, t.peers[i], r.name, c.failed, c.runs, c.err))
				mark = fmt.Sprintf(" [%d]", len(notes))
			}
			if c.failed == c.runs {
				cells = append(cells, "failed"+mark, "—", "—")
				continue
			}
			cells = append(cells, fmt.Sprintf("%.1f%s", c.rate, mark), fmt.Sprintf("%.2f %s", c.cpu, cpuUnit), fmt.Sprintf("%.0f", float64(c.peak)/(1<<20)))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.name, r.unit, cells[0], cells[3], ratio, cells[1], cells[4], cpuRatio, cells[2], cells[5])
	}
	w.Flush()
	if len(notes) > 0 {
		fmt.Fprintf(&b, "\n%s\n", strings.Join(notes, "\n"))
	}
	return b.String()
}
