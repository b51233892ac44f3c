//go:build !linux

package ftpd

import "net"

// peerClosed has no portable implementation; read errors on the control connection remain the
// evidence that a client is gone.
func peerClosed(*net.TCPConn) bool { return false }

// stopListening is not possible portably: the library's own passive listener stays open on a
// port that no client is told, and nothing accepts from it.
func stopListening(*net.TCPListener) error { return nil }
