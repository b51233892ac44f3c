package ftpd

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tcpState reads what the kernel knows of c: whether the peer closed it (FIN or RST: the socket
// is no longer ESTABLISHED) and the lowest round trip it measured. Errors count as open
// with an unknown deviation: this only ever adds evidence that a client is gone.
func tcpState(c *net.TCPConn) connState {
	raw, err := c.SyscallConn()
	if err != nil {
		return connState{}
	}
	var st connState
	cerr := raw.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			st.closed = info.State != unix.BPF_TCP_ESTABLISHED
			st.minRTT = time.Duration(info.Min_rtt) * time.Microsecond
		}
	})
	if cerr != nil {
		return connState{closed: true} // the descriptor is closed
	}
	return st
}

// stopListening takes a listening socket out of the LISTEN state while its descriptor stays
// open: on Linux, shutdown(SHUT_RD) of a listening TCP socket disconnects it (inet_shutdown ->
// tcp_disconnect), so connections to its port are refused, while deadlines and Close still work.
func stopListening(l *net.TCPListener) error {
	raw, err := l.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_RD) }); err != nil {
		return err
	}
	return serr
}
