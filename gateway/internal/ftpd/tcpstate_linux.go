package ftpd

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerClosed reports whether the kernel has seen the peer close c (FIN or RST): the socket is no
// longer ESTABLISHED. Errors count as open: this only ever adds evidence that a client is gone.
func peerClosed(c *net.TCPConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var state uint8 = unix.BPF_TCP_ESTABLISHED
	cerr := raw.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			state = info.State
		}
	})
	if cerr != nil {
		return true // the descriptor is closed
	}
	return state != unix.BPF_TCP_ESTABLISHED
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
