// Package sessionmetrics counts the front ends' connections, logins and refusals for
// Prometheus. *Metrics is the Observer that sftpd and ftpd accept.
package sessionmetrics

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the session counters, registered once per process.
type Metrics struct {
	open     *prometheus.GaugeVec   // protocol
	sessions *prometheus.CounterVec // protocol
	logins   *prometheus.CounterVec // protocol, result
	refused  *prometheus.CounterVec // protocol, reason
}

// New creates the metrics and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_sessions_open", Help: "Client connections open now (SFTP connections, FTP control connections), by protocol.",
		}, []string{"protocol"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sessions_total", Help: "Client connections accepted, by protocol.",
		}, []string{"protocol"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_logins_total", Help: "Login attempts by protocol and result (ok, failed).",
		}, []string{"protocol", "result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_connections_refused_total",
			Help: "Connections or logins refused before any credential was checked, by protocol and reason (max_sessions, max_clients, unavailable, tls_required; the defender's banned, per_ip, unauthenticated_per_ip, unauthenticated).",
		}, []string{"protocol", "reason"}),
	}
	reg.MustRegister(m.open, m.sessions, m.logins, m.refused)
	// Every series alerts and dashboards use exists from the start, at 0: a rate over a series
	// that appears only with its first event misses that event, and an absent series alerts on
	// nothing.
	for _, p := range []string{"sftp", "ftp", "ftps"} {
		m.open.WithLabelValues(p)
		m.sessions.WithLabelValues(p)
		m.logins.WithLabelValues(p, "ok")
		m.logins.WithLabelValues(p, "failed")
	}
	m.refused.WithLabelValues("sftp", "max_sessions")
	m.refused.WithLabelValues("sftp", "unavailable")
	m.refused.WithLabelValues("ftp", "max_clients")
	m.refused.WithLabelValues("ftp", "unavailable")
	m.refused.WithLabelValues("ftp", "tls_required")
	for _, p := range []string{"sftp", "ftp", "ftps"} {
		for _, r := range []string{"banned", "per_ip", "unauthenticated_per_ip", "unauthenticated"} {
			m.refused.WithLabelValues(p, r)
		}
	}
	return m
}

// SessionStarted counts a connection; ended (call once) counts it closed.
func (m *Metrics) SessionStarted(protocol string) (ended func()) {
	m.sessions.WithLabelValues(protocol).Inc()
	g := m.open.WithLabelValues(protocol)
	g.Inc()
	return g.Dec
}

// Login counts a login attempt's outcome.
func (m *Metrics) Login(protocol string, ok bool) {
	result := "failed"
	if ok {
		result = "ok"
	}
	m.logins.WithLabelValues(protocol, result).Inc()
}

// Refused counts a refusal.
func (m *Metrics) Refused(protocol, reason string) {
	m.refused.WithLabelValues(protocol, reason).Inc()
}
