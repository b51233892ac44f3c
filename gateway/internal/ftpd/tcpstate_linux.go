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
