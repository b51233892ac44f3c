package app

import (
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/ftpd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

func newHTTP(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
}
