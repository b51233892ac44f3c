package ftpd

import (
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"
)

// newHandoffListener goes through what ftpserverlib does for one PASV: ask for a port pair,
// listen on the listened port, wrap.
func newHandoffListener(t *testing.T, h *passiveHandoff) (*handoffListener, int) {
	t.Helper()
	exposed, listened, ok := h.FetchNext()
	if !ok {
		t.Fatal("no port")
	}
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4zero, Port: listened})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })
	hl, err := h.wrap(tcp)
	if err != nil {
		t.Fatal(err)
	}
	return hl, exposed
}

// The deadline ftpserverlib sets on its listener bounds the wait for a handed-over connection,
// and closing the listener ends it; a connection handed over before Accept is kept for it.
func TestHandoffListenerAccept(t *testing.T) {
	h := newPassiveHandoff(PortRange{Start: 31000, End: 31001}, slog.New(slog.DiscardHandler))

	hl, _ := newHandoffListener(t, h)
	hl.tcp.SetDeadline(time.Now().Add(100 * time.Millisecond))
	start := time.Now()
	_, err := hl.Accept()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || time.Since(start) > 2*time.Second {
		t.Errorf("Accept past the deadline = %v after %s, want a timeout at ~100ms", err, time.Since(start))
	}

	hl2, port2 := newHandoffListener(t, h)
	client, server := net.Pipe()
	defer client.Close()
	h.deliver(server, port2)
	got, err := hl2.Accept()
	if err != nil || got != server {
		t.Errorf("Accept of a connection handed over before = %v, %v", got, err)
	}

	// Every port is taken: hl's (still open) and hl2's.
	if _, _, ok := h.FetchNext(); ok {
		t.Error("a third port out of a range of two")
	}
	hl.Close()
	if _, err := hl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v", err)
	}
	// Closing freed hl's port.
	if exposed, _, ok := h.FetchNext(); !ok || exposed != 31000 {
		t.Errorf("FetchNext after a close = %d, %v, want 31000", exposed, ok)
	}
}
