package ftpd

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
)

// Passive data connections behind a load balancer (Config.PassiveHandoff).
//
// Several replicas sit behind one load balancer that forwards the FTP control port and every
// port of the passive range to the same port of each replica (its FTP listener), keeping one
// client on one replica (source-IP stickiness) and telling the replica, in a PROXY header,
// which port the client dialed. A PASV reply therefore announces a port of the range that no
// socket of this replica listens on; the data connection arrives on the FTP listener, and
// ServeDemux hands it to the transfer waiting on that port.
//
// ftpserverlib (v0.30.0, transfer_pasv.go) still opens a real listener per PASV and accepts
// the data connection from it, with a deadline set on that listener. It asks
// Settings.PassiveTransferPortRange for an (exposed, listened) pair and hands the new listener
// to MainDriverExtensionPassiveWrapper.WrapPassiveListener. passiveHandoff is that port getter:
// it picks a free exposed port of the range, and a free ephemeral port for ftpserverlib to
// listen on, and remembers the pair; WrapPassiveListener finds the exposed port again from the
// listener's port and returns a handoffListener, whose Accept returns the connection handed
// over for its exposed port, or whatever the real listener's Accept returns first (its
// deadline's timeout, its closing). A connection made straight to the real listener bypassed
// the load balancer and is refused.
//
// An exposed port stays taken until ftpserverlib closes the real listener (transfer done, ABOR,
// next PASV, client gone); closed listeners are found and their ports freed when a port is
// next needed or a connection arrives for them.

// reservationTTL is how long a port pair waits for ftpserverlib to listen and wrap: it does both
// right after asking, so a reservation this old is one whose listen failed.
const reservationTTL = 10 * time.Second

type passiveHandoff struct {
	first, last int
	log         *slog.Logger

	exhausted atomic.Uint64 // PASV/EPSV refused for want of a port

	mu       sync.Mutex
	next     int                      // offset in the range where the search for a free port starts
	ports    map[int]*handoffListener // exposed port -> the listener of the PASV that owns it
	reserved map[int]reservation      // listened port -> exposed port, between FetchNext and WrapPassiveListener
}

type reservation struct {
	exposed int
	at      time.Time
}

var _ ftpserver.PasvPortGetter = (*passiveHandoff)(nil)

func newPassiveHandoff(r PortRange, log *slog.Logger) *passiveHandoff {
	return &passiveHandoff{first: r.Start, last: r.End, log: log,
		ports: map[int]*handoffListener{}, reserved: map[int]reservation{}}
}

// NumberAttempts is how often ftpserverlib asks before giving up (it tries at least 10).
func (h *passiveHandoff) NumberAttempts() int { return 10 }

// FetchNext returns a free exposed port of the range and a free port for ftpserverlib to listen
// on; ok is false when every exposed port is taken (the client gets a 421 reply).
func (h *passiveHandoff) FetchNext() (exposed, listened int, ok bool) {
	listened, probes, err := h.freeListenPort()
	defer func() {
		for _, p := range probes {
			p.Close()
		}
	}()
	if err != nil {
		h.log.Error("passive port: no port to listen on", "err", err)
		return 0, 0, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sweepLocked()
	exposed = h.takeLocked()
	if exposed == 0 {
		h.exhausted.Add(1)
		h.log.Warn("passive port: every port of the range is in use", "range", fmt.Sprintf("%d-%d", h.first, h.last))
		return 0, 0, false
	}
	h.reserved[listened] = reservation{exposed: exposed, at: time.Now()}
	return exposed, listened, true
}

// freeListenPort finds an ephemeral port that no reservation holds, by binding port 0 the way
// ftpserverlib will bind the port returned (0.0.0.0). The probes are closed by the caller once
// the reservation is recorded; another process taking the port in between makes ftpserverlib's
// listen fail, and it asks again.
func (h *passiveHandoff) freeListenPort() (int, []*net.TCPListener, error) {
	var probes []*net.TCPListener
	for range 8 {
		l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4zero})
		if err != nil {
			return 0, probes, err
		}
		probes = append(probes, l)
		port := l.Addr().(*net.TCPAddr).Port
		h.mu.Lock()
		_, taken := h.reserved[port]
		h.mu.Unlock()
		if !taken {
			return port, probes, nil
		}
	}
	return 0, probes, errors.New("every ephemeral port probed is reserved")
}

// takeLocked returns the next free exposed port (round robin, so a port just released is the
// last to be reused), or 0.
func (h *passiveHandoff) takeLocked() int {
	n := h.last - h.first + 1
	inUse := make(map[int]bool, len(h.reserved))
	for _, r := range h.reserved {
		inUse[r.exposed] = true
	}
	for i := range n {
		p := h.first + (h.next+i)%n
		if h.ports[p] == nil && !inUse[p] {
			h.next = (h.next + i + 1) % n
			return p
		}
	}
	return 0
}

// available reports whether a port of the range is free now (a PASV may still lose it to
// another session before the library asks; the library then answers 421).
func (h *passiveHandoff) available() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sweepLocked()
	n := h.last - h.first + 1
	if len(h.ports)+len(h.reserved) < n {
		return true
	}
	h.exhausted.Add(1)
	return false
}

// inUse is the number of ports of the range reserved or serving a PASV.
func (h *passiveHandoff) inUse() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ports) + len(h.reserved)
}

// sweepLocked frees the ports of closed listeners and of reservations that were never wrapped.
func (h *passiveHandoff) sweepLocked() {
	for p, hl := range h.ports {
		if hl.closed() {
			delete(h.ports, p)
			hl.drain()
		}
	}
	for port, r := range h.reserved {
		if time.Since(r.at) > reservationTTL {
			delete(h.reserved, port)
		}
	}
}

// wrap returns the handoffListener for the listener ftpserverlib opened on a reserved port, or
// an error when the port was not reserved (its reservation expired).
func (h *passiveHandoff) wrap(l net.Listener) (*handoffListener, error) {
	tcp, ok := l.(*net.TCPListener)
	if !ok {
		return nil, fmt.Errorf("ftpd: passive listener is a %T, not TCP", l)
	}
	port := tcp.Addr().(*net.TCPAddr).Port
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.reserved[port]
	if !ok {
		return nil, fmt.Errorf("ftpd: passive listener on port %d has no reserved public port", port)
	}
	delete(h.reserved, port)
	hl := &handoffListener{tcp: tcp, port: r.exposed, conns: make(chan net.Conn, 1), log: h.log}
	h.ports[r.exposed] = hl
	return hl, nil
}

// owns reports whether port is one of the range (a data connection).
func (h *passiveHandoff) owns(port int) bool { return port >= h.first && port <= h.last }

// deliver hands a data connection that arrived for port to the transfer waiting on it, or
// closes it when there is none (no PASV pending, or one already has its connection).
func (h *passiveHandoff) deliver(c net.Conn, port int) {
	// Under the lock: a sweep cannot drop the listener between the check and the offer, so a
	// connection offered to a listener closed just after is drained by the next sweep.
	h.mu.Lock()
	hl := h.ports[port]
	if hl != nil && hl.closed() {
		delete(h.ports, port)
		hl.drain()
		hl = nil
	}
	offered := hl != nil && hl.offer(c)
	h.mu.Unlock()
	if !offered {
		h.log.Info("data connection refused: no transfer waits on its port", "remote", c.RemoteAddr().String(), "port", port)
		c.Close()
	}
}

// closeAll closes every pending handed-over connection (at shutdown).
func (h *passiveHandoff) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, hl := range h.ports {
		hl.drain()
	}
}

// handoffListener is what ftpserverlib accepts a PASV's data connection from (see above).
type handoffListener struct {
	tcp   *net.TCPListener // ftpserverlib's listener: its deadline, its closing
	port  int              // the exposed port the client was told
	conns chan net.Conn    // the connection handed over (at most one)
	log   *slog.Logger

	mu     sync.Mutex
	handed bool // a connection was offered: later ones are refused
}

var _ net.Listener = (*handoffListener)(nil)

// offer queues c for Accept; false when the transfer already has its connection.
func (l *handoffListener) offer(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.handed {
		return false
	}
	l.handed = true
	l.conns <- c // never blocks: capacity one, offered once
	return true
}

// Accept returns the connection handed over for the port, or the real listener's error: a
// timeout at the deadline ftpserverlib set on it, or net.ErrClosed once it closed it. The
// real Accept runs in a goroutine that never outlives the call: when a handed-over connection
// wins, the listener's deadline is moved to the past to end it (ftpserverlib accepts one
// connection per PASV, so the deadline is not needed again).
func (l *handoffListener) Accept() (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	for {
		res := make(chan result, 1)
		go func() {
			c, err := l.tcp.Accept()
			res <- result{c, err}
		}()
		select {
		case c := <-l.conns:
			l.tcp.SetDeadline(time.Unix(1, 0)) //nolint:errcheck // a closed listener has ended the Accept already
			if r := <-res; r.c != nil {
				l.refuse(r.c)
			}
			return c, nil
		case r := <-res:
			if r.err != nil {
				return nil, r.err
			}
			l.refuse(r.c)
		}
	}
}

func (l *handoffListener) refuse(c net.Conn) {
	l.log.Warn("direct data connection refused: behind the load balancer data connections arrive on the FTP listener",
		"remote", c.RemoteAddr().String())
	c.Close()
}

func (l *handoffListener) Close() error   { return l.tcp.Close() }
func (l *handoffListener) Addr() net.Addr { return l.tcp.Addr() }

// closed reports whether ftpserverlib closed the real listener. It asks the socket without
// touching its deadline: a closed listener refuses RawConn.Control.
func (l *handoffListener) closed() bool {
	rc, err := l.tcp.SyscallConn()
	if err != nil {
		return true
	}
	return rc.Control(func(uintptr) {}) != nil
}

// drain closes a handed-over connection nobody accepted.
func (l *handoffListener) drain() {
	select {
	case c := <-l.conns:
		c.Close()
	default:
	}
}
