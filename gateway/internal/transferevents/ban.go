package transferevents

import (
	"time"

	"github.com/ferrygw/ferry/pipeline/event"
)

// Ban is what a Client Banned event says (the defender's ban, in this package's words).
type Ban struct {
	Addr     string // the address banned, or its IPv6 /64
	Protocol string // of the offence that reached the threshold
	User     string // the name last tried, if any
	Reason   string
	Until    time.Time
	Score    int
	Count    int // bans of the address remembered, this one included
}

// ClientBanned emits a Client Banned event. It never blocks (see Sink).
func (e *Events) ClientBanned(b Ban) {
	e.emit(event.DetailTypeClientBanned, event.GatewayDetail{
		User: b.User, Protocol: b.Protocol, ClientAddress: b.Addr, FailureReason: reason(b.Reason, nil),
		BannedUntil: b.Until.UTC(), Score: b.Score, Bans: b.Count,
	})
}
