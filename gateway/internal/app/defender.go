package app

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/defender"
	"github.com/ferrygw/ferry/gateway/internal/sessionmetrics"
	"github.com/ferrygw/ferry/gateway/internal/transferevents"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

// newDefender builds the guard every front end admits connections through and checks passwords
// behind (connections and defender in the config); its bans become Client Banned events.
func newDefender(cfg *config.Config, reg prometheus.Registerer, events *transferevents.Events, counts *sessionmetrics.Metrics, logger *slog.Logger) (*defender.Defender, error) {
	safelist, err := cfg.Defender.SafelistPrefixes()
	if err != nil {
		return nil, fmt.Errorf("defender.safelist: %w", err)
	}
	c, d := cfg.Connections, cfg.Defender
	dc := defender.Config{
		MaxPerIP:                c.MaxPerIP,
		MaxUnauthenticatedPerIP: c.MaxUnauthenticatedPerIP,
		MaxUnauthenticated:      c.MaxUnauthenticated,
		Disabled:                !d.Enabled,
		Threshold:               d.Threshold,
		Window:                  d.Window,
		LoginFailedScore:        d.LoginFailedScore,
		NoLoginScore:            d.NoLoginScore,
		BanTime:                 d.BanTime,
		MaxBanTime:              d.MaxBanTime,
		Safelist:                safelist,
		MaxTracked:              d.MaxTracked,
		Logger:                  logger,
		Registerer:              reg,
		Refused:                 counts.Refused, // one ferry_connections_refused_total for every refusal
	}
	if events != nil {
		dc.OnBan = func(b defender.Ban) {
			events.ClientBanned(transferevents.Ban{Addr: b.Addr, Protocol: b.Protocol, User: b.User, Reason: b.Reason,
				Until: b.Until, Score: b.Score, Count: b.Count})
		}
	}
	return defender.New(dc)
}

// livePermissions returns u's permissions as the users file says now, for the storage view of
// a session that logged in as u: an edit of the permissions applies to its next operation, and
// a revoked account (package sessions closes its connection) may do nothing meanwhile.
func livePermissions(store *users.Store, u *users.User) func() users.Permissions {
	return func() users.Permissions {
		cur, ok := store.Lookup(u.Name)
		if !ok || users.Revoked(u, cur) != "" {
			return users.Permissions{}
		}
		return cur.Permissions
	}
}
