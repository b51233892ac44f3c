package ftpd

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
)

// Passive data listeners bound to the control listener's address (without a load balancer;
// behind one see handoff.go).
//
// ftpserverlib v0.30.0 (transfer_pasv.go) opens each PASV/EPSV listener itself, on
// "0.0.0.0:<port>": every interface, whatever address the control listener has. Its only
// hooks are Settings.PassiveTransferPortRange, which picks the port but not the address
// (FetchNext returns an exposed port, announced to the client, and a port to listen on), and
// MainDriverExtensionPassiveWrapper, which gets the listener once it is open. A wrapper that
// refused connections arriving on another local address would still leave the port open on
// every interface. So the port the client is told is a real listener of Ferry's, bound to the
// control listener's address:
//
//   - Before the library handles PASV/EPSV (the command wrapping of epsvall.go), the session
//     reserves a port of the range by binding it on its control listener's address. If none is
//     free the client gets 425 at once, and the exhaustion is counted.
//   - FetchNext (the library's port getter, one per control listener) hands a reservation over
//     as the exposed port, and names a fresh ephemeral port for the library's own listener.
//   - WrapPassiveListener receives the library's listener, finds the reservation by that
//     ephemeral port, and stops the library's socket from listening (shutdown(2) of a listening
//     socket on Linux returns it to the closed state while the library keeps its descriptor,
//     on which it still sets deadlines and which it closes when the transfer ends). It returns
//     a listener that accepts from the bound port, with the library's accept deadline
//     (Config.DataConnectTimeout).
//   - The library closes only its own listener; a janitor sees that and closes the bound port.
//
// Reservations are interchangeable within one control listener (same address, any port of the
// range), so it does not matter which session's reservation a FetchNext hands over. The
// library's own socket listens on every interface only between its listen and the wrap
// (microseconds, on a port never announced).

// reservationTTL bounds a reservation the library never took or never wrapped: it does both
// right after the reservation, so an older one belongs to a PASV that failed.
const passiveReservationTTL = 10 * time.Second

// errNoPassivePort is why a PASV/EPSV found no port.
var errNoPassivePort = errors.New("every passive port is in use")

type passivePorts struct {
	first, last int // 0, 0: any free port
	timeout     time.Duration
	log         *slog.Logger
	exhausted   atomic.Uint64

	mu      sync.Mutex
	next    int                         // where the round-robin search for a free port starts
	ports   map[int]*boundPort          // every reservation by its (exposed, bound) port
	queued  map[netip.Addr][]*boundPort // reserved by a session, not yet handed to the library
	claimed map[int]*boundPort          // by the library's ephemeral port, between FetchNext and wrap
	sweeper bool                        // a janitor goroutine runs
}

// boundPort is one reserved passive port.
type boundPort struct {
	port  int
	ln    *net.TCPListener // bound to the control listener's address
	at    time.Time
	decoy *net.TCPListener // the library's own listener, once wrapped
}

func newPassivePorts(r PortRange, timeout time.Duration, log *slog.Logger) *passivePorts {
	return &passivePorts{first: r.Start, last: r.End, timeout: timeout, log: log,
		ports: map[int]*boundPort{}, queued: map[netip.Addr][]*boundPort{}, claimed: map[int]*boundPort{}}
}

// reserve binds a free port of the range on ip (the zero Addr: every interface, as the control
// listener) and queues it for the next FetchNext of that control listener.
func (p *passivePorts) reserve(ip netip.Addr) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweepLocked()
	b, err := p.bindLocked(ip)
	if err != nil {
		p.exhausted.Add(1)
		p.log.Warn("passive port: none free", "range", p.rangeString(), "in_use", len(p.ports), "err", err)
		return err
	}
	p.queued[ip] = append(p.queued[ip], b)
	p.startSweeperLocked()
	return nil
}

func (p *passivePorts) rangeString() string {
	if p.first == 0 {
		return "any"
	}
	return fmt.Sprintf("%d-%d", p.first, p.last)
}

// bindLocked binds the next free port on ip.
func (p *passivePorts) bindLocked(ip netip.Addr) (*boundPort, error) {
	addr := &net.TCPAddr{}
	if ip.IsValid() {
		addr.IP = ip.AsSlice()
	}
	if p.first == 0 {
		ln, err := net.ListenTCP("tcp", addr)
		if err != nil {
			return nil, err
		}
		b := &boundPort{port: ln.Addr().(*net.TCPAddr).Port, ln: ln, at: time.Now()}
		p.ports[b.port] = b
		return b, nil
	}
	n := p.last - p.first + 1
	for i := range n {
		port := p.first + (p.next+i)%n
		if p.ports[port] != nil {
			continue
		}
		addr.Port = port
		ln, err := net.ListenTCP("tcp", addr)
		if err != nil {
			continue // another process holds it
		}
		p.next = (p.next + i + 1) % n
		b := &boundPort{port: port, ln: ln, at: time.Now()}
		p.ports[port] = b
		return b, nil
	}
	return nil, errNoPassivePort
}

// take hands a reservation of ip to the library with an ephemeral port for its own listener,
// reserving one now when the session reserved none (the library asks again after its own
// listen failed).
func (p *passivePorts) take(ip netip.Addr) (exposed, listened int, ok bool) {
	listened, err := ephemeralPort()
	if err != nil {
		p.log.Error("passive port: no ephemeral port", "err", err)
		return 0, 0, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var b *boundPort
	if q := p.queued[ip]; len(q) > 0 {
		b, p.queued[ip] = q[0], q[1:]
	} else if b, err = p.bindLocked(ip); err != nil {
		p.exhausted.Add(1)
		return 0, 0, false
	}
	b.at = time.Now()
	p.claimed[listened] = b
	p.startSweeperLocked()
	return b.port, listened, true
}

// ephemeralPort finds a free port for the library's listener (which binds every interface).
func ephemeralPort() (int, error) {
	l, err := net.ListenTCP("tcp", &net.TCPAddr{})
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// wrap turns the library's listener into one that accepts from the bound port.
func (p *passivePorts) wrap(l net.Listener) (net.Listener, error) {
	tcp, ok := l.(*net.TCPListener)
	if !ok {
		return nil, fmt.Errorf("ftpd: passive listener is a %T, not TCP", l)
	}
	p.mu.Lock()
	b := p.claimed[tcp.Addr().(*net.TCPAddr).Port]
	if b != nil {
		delete(p.claimed, tcp.Addr().(*net.TCPAddr).Port)
		b.decoy = tcp
	}
	p.mu.Unlock()
	if b == nil {
		return nil, errors.New("passive port reservation expired")
	}
	if err := stopListening(tcp); err != nil {
		p.log.Warn("passive port: the library's own listener keeps listening", "err", err)
	}
	return &boundListener{b: b, timeout: p.timeout}, nil
}

// inUse is the number of ports reserved or serving a transfer.
func (p *passivePorts) inUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ports)
}

func (p *passivePorts) startSweeperLocked() {
	if p.sweeper || len(p.ports) == 0 {
		return
	}
	p.sweeper = true
	go p.sweep()
}

// sweep frees ports whose transfer the library closed, until none is left.
func (p *passivePorts) sweep() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for range t.C {
		p.mu.Lock()
		p.sweepLocked()
		if len(p.ports) == 0 {
			p.sweeper = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

func (p *passivePorts) sweepLocked() {
	expired := func(b *boundPort) bool { return time.Since(b.at) > passiveReservationTTL }
	for port, b := range p.ports {
		switch {
		case b.decoy != nil && !listenerClosed(b.decoy):
			continue // serving a PASV: the library has not closed it
		case b.decoy == nil && !expired(b):
			continue // reserved, about to be wrapped
		}
		b.ln.Close()
		delete(p.ports, port)
	}
	for l, b := range p.claimed {
		if p.ports[b.port] != b {
			delete(p.claimed, l)
		}
	}
	for ip, q := range p.queued {
		kept := q[:0]
		for _, b := range q {
			if p.ports[b.port] == b {
				kept = append(kept, b)
			}
		}
		if len(kept) == 0 {
			delete(p.queued, ip)
		} else {
			p.queued[ip] = kept
		}
	}
}

// closeAll releases every port (at shutdown).
func (p *passivePorts) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for port, b := range p.ports {
		b.ln.Close()
		if b.decoy != nil {
			b.decoy.Close()
		}
		delete(p.ports, port)
	}
	clear(p.claimed)
	clear(p.queued)
}

// listenerClosed reports whether l was closed, without touching its deadline.
func listenerClosed(l *net.TCPListener) bool {
	rc, err := l.SyscallConn()
	if err != nil {
		return true
	}
	return rc.Control(func(uintptr) {}) != nil
}

// portGetter is the library's port getter for one control listener.
type portGetter struct {
	p  *passivePorts
	ip netip.Addr
}

var _ ftpserver.PasvPortGetter = portGetter{}

// NumberAttempts is how often the library asks before giving up (at least 10 in any case).
func (g portGetter) NumberAttempts() int { return 10 }

// FetchNext hands over a reserved port; ok is false when none could be had (the library then
// answers 421; the session's own reservation normally made that a 425 already).
func (g portGetter) FetchNext() (exposed, listened int, ok bool) { return g.p.take(g.ip) }

// boundListener accepts a PASV's data connection from the port bound to the control address.
type boundListener struct {
	b       *boundPort
	timeout time.Duration
}

// Accept waits for the data connection until the deadline the library would have set on its
// own listener. It is called once per PASV.
func (l *boundListener) Accept() (net.Conn, error) {
	l.b.ln.SetDeadline(time.Now().Add(l.timeout)) //nolint:errcheck // a closed listener fails the Accept below
	return l.b.ln.Accept()
}

// Close is not called by the library (it closes its own listener; the janitor follows), but a
// caller that does gets the port freed at the next sweep.
func (l *boundListener) Close() error   { return l.b.ln.Close() }
func (l *boundListener) Addr() net.Addr { return l.b.ln.Addr() }

// passiveAddr is the address passive ports are bound to for a control listener: its own,
// or the zero Addr (every interface) when it listens on every interface.
func passiveAddr(l net.Listener) netip.Addr {
	ta, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok || ip.IsUnspecified() {
		return netip.Addr{}
	}
	return ip.Unmap()
}
