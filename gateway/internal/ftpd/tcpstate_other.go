//go:build !linux

package ftpd

import "net"

// tcpState has no portable implementation: read errors on the control connection remain the
// evidence that a client is gone, and the grace is the configured maximum.
func tcpState(*net.TCPConn) connState { return connState{} }

// stopListening is not possible portably: the library's own passive listener stays open on a
// port that no client is told, and nothing accepts from it.
func stopListening(*net.TCPListener) error { return nil }
