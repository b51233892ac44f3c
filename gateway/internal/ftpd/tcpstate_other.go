//go:build !linux

package ftpd

import "net"

// peerClosed has no portable implementation; read errors on the control connection remain the
// evidence that a client is gone.
func peerClosed(*net.TCPConn) bool { return false }
