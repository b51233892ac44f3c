package sftpd

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"time"
)

// Observer is told about connections, logins and refusals, for metrics. Deps.Observer may be
// nil.
type Observer interface {
	// SessionStarted is called for each accepted connection; ended when it closes.
	SessionStarted(protocol string) (ended func())
	Login(protocol string, ok bool)
	Refused(protocol, reason string)
}

type noObserver struct{}

func (noObserver) SessionStarted(string) func() { return func() {} }
func (noObserver) Login(string, bool)           {}
func (noObserver) Refused(string, string)       {}

// Refusal reasons given to Observer.Refused.
const (
	RefusedMaxSessions = "max_sessions"
	RefusedUnavailable = "unavailable"
)

// SSH disconnect reason (RFC 4253 §11.1) for a server that cannot serve right now.
const disconnectServiceNotAvailable = 7

// unavailableMessage is what a refused client shows ("Received disconnect from …: 7: …").
const unavailableMessage = "service temporarily unavailable (storage unreachable); try again later"

// maxRefusing bounds the connections being refused at once; beyond it they are just closed.
const maxRefusing = 64

// refuse tells an SSH client the service is unavailable with SSH_MSG_DISCONNECT, before the
// key exchange, and closes the connection.
//
// RFC 4253 allows a disconnect at any time, and both OpenSSH (which prints "Received disconnect
// from HOST port PORT:7: <message>") and x/crypto/ssh ("ssh: disconnect, reason 7: <message>")
// report it before key exchange, where nothing is encrypted yet: the packet is length, padding
// length, payload, padding, with no MAC. x/crypto/ssh has no call for sending one before
// authentication, hence this. The client's own identification and KEXINIT are read and
// discarded before the close: closing with unread data would send a RST, and a client that gets
// the RST before reading our packet says "connection reset" instead of the reason.
func refuse(nc net.Conn, version, message string) {
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(3 * time.Second))
	payload := []byte{1} // SSH_MSG_DISCONNECT
	payload = binary.BigEndian.AppendUint32(payload, disconnectServiceNotAvailable)
	payload = binary.BigEndian.AppendUint32(payload, uint32(len(message)))
	payload = append(payload, message...)
	payload = binary.BigEndian.AppendUint32(payload, 0) // language tag ""
	pad := 8 - (5+len(payload))%8
	if pad < 4 {
		pad += 8
	}
	pkt := binary.BigEndian.AppendUint32(nil, uint32(1+len(payload)+pad))
	pkt = append(pkt, byte(pad))
	pkt = append(pkt, payload...)
	padding := make([]byte, pad)
	_, _ = rand.Read(padding)
	pkt = append(pkt, padding...)
	if _, err := nc.Write(append([]byte(version+"\r\n"), pkt...)); err != nil {
		return
	}
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(nc, 64<<10))
}
