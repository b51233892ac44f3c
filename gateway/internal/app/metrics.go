package app

import (
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/ftpd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferrygw/ferry/gateway/internal/transfermem"
)

// newMetricsMux serves /metrics (Prometheus) and /healthz (liveness for the load balancer).
// Profiles are not here: a scraper or load balancer that reaches this port must not reach them
// (see newPprofMux).
func newMetricsMux(reg *prometheus.Registry) *http.ServeMux {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// registerFTPMetrics exports the FTP server's passive port use: a PASV/EPSV refused with 425
// because every port of ftp.passive_ports was taken means the range is too small for the load.
func registerFTPMetrics(reg prometheus.Registerer, srv *ftpd.Server) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ferry_ftp_passive_ports_exhausted_total",
			Help: "PASV/EPSV commands refused with 425 because every passive port was in use.",
		}, func() float64 { return float64(srv.PassivePortsExhausted()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_ftp_passive_ports_in_use",
			Help: "Passive ports reserved or serving a data connection.",
		}, func() float64 { return float64(srv.PassivePortsInUse()) }),
	)
}

// newPprofMux serves Go's profiles on listen.pprof, which config validation keeps on loopback.
func newPprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // and every named profile under it
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// registerLimits exports the transfer memory budget and counts refusals by a limit; the
// returned function gives a protocol's server its refusal counter.
func registerLimits(reg prometheus.Registerer, mem *transfermem.Budget) func(protocol string) func(limit string) {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	refusals := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_limit_refusals_total",
		Help: "Uploads or channels refused because a client reached a limit (uploads_per_session, channels_per_connection).",
	}, []string{"protocol", "limit"})
	reg.MustRegister(
		gauge("ferry_transfer_memory_limit_bytes", "The transfer memory budget (limits.transfer_memory).",
			func() float64 { return float64(mem.Limit()) }),
		gauge("ferry_transfer_memory_reserved_bytes", "Transfer memory reserved by transfers now (part buffers, reorder windows, read-ahead).",
			func() float64 { return float64(mem.Reserved()) }),
		gauge("ferry_transfer_memory_allocated_bytes", "Transfer memory the process holds now, in use or pooled.",
			func() float64 { return float64(mem.Allocated()) }),
		counter("ferry_transfer_memory_waits_total", "Reservations of transfer memory that had to wait for memory to come back.",
			func() float64 { return float64(mem.Waits()) }),
		counter("ferry_transfer_memory_wait_seconds_total", "Time transfers spent waiting for transfer memory.",
			mem.WaitSeconds),
		counter("ferry_transfer_memory_refusals_total", "Reservations of transfer memory that gave up after limits.transfer_memory_wait: the transfer failed as busy.",
			func() float64 { return float64(mem.Refusals()) }),
		refusals,
	)
	return func(protocol string) func(string) {
		return func(limit string) { refusals.WithLabelValues(protocol, limit).Inc() }
	}
}

func newHTTP(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
}
