package defender

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Defender's Prometheus series.
type metrics struct {
	loginsRefused *prometheus.CounterVec // protocol
	score         *prometheus.CounterVec // protocol, offence
	bans          *prometheus.CounterVec // protocol
}

func newMetrics(d *Defender, reg prometheus.Registerer) *metrics {
	m := &metrics{
		loginsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_defender_logins_refused_total",
			Help: "Login attempts refused without a password check because their address is banned.",
		}, []string{"protocol"}),
		score: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_defender_score_total",
			Help: "Score points added to client addresses, by protocol and offence (login_failed, no_login).",
		}, []string{"protocol", "offence"}),
		bans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_defender_bans_total",
			Help: "Client addresses banned, by the protocol of the offence that reached the threshold.",
		}, []string{"protocol"}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.loginsRefused, m.score, m.bans,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_connections_unauthenticated",
			Help: "Connections accepted and not logged in yet (SFTP and FTP).",
		}, func() float64 { return float64(d.unauthenticated()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_defender_banned_addresses",
			Help: "Client addresses (IPv6: /64 prefixes) banned now.",
		}, func() float64 { b, _ := d.counts(); return float64(b) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_defender_tracked_addresses",
			Help: "Client addresses the defender keeps a score, a ban or connections for.",
		}, func() float64 { _, n := d.counts(); return float64(n) }),
	)
	return m
}

func (d *Defender) unauthenticated() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.preauth
}

// counts returns the addresses banned now and the addresses tracked.
func (d *Defender) counts() (banned, tracked int) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, h := range d.hosts {
		if h.banned(now) {
			banned++
		}
	}
	return banned, len(d.hosts)
}
