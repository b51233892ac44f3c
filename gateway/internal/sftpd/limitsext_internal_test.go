package sftpd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"testing/synctest"
)

// memChannel is a channel whose client has sent all of in and whose replies go to out.
type memChannel struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (m *memChannel) Read(p []byte) (int, error)  { return m.in.Read(p) }
func (m *memChannel) Write(p []byte) (int, error) { return m.out.Write(p) }
func (m *memChannel) Close() error                { return nil }

func packet(typ byte, body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(1+len(body)))
	return append(append(b, typ), body...)
}

// A session hands pkg/sftp at most maxQueued unanswered requests; each reply lets one more in,
// whether it is written in one piece or as a header and a payload.
func TestQueuedRequestsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const sent = maxQueued + 5
		var in []byte
		for i := range sent {
			in = append(in, packet(16, binary.BigEndian.AppendUint32(nil, uint32(i)))...) // REALPATH-sized
		}
		ch := &memChannel{in: bytes.NewReader(in)}
		c := newLimitsConn(ch)
		c.versioned = true // past INIT/VERSION: only requests and their replies here

		var read atomic.Int32
		done := make(chan error, 1)
		go func() { // pkg/sftp's reading loop
			var hdr [4]byte
			for {
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					done <- err
					return
				}
				if _, err := io.ReadFull(c, make([]byte, binary.BigEndian.Uint32(hdr[:]))); err != nil {
					done <- err
					return
				}
				read.Add(1)
			}
		}()
		synctest.Wait()
		if got := read.Load(); got != maxQueued {
			t.Fatalf("%d requests read with none answered, want %d", got, maxQueued)
		}
		status := packet(101, make([]byte, 12))
		c.Write(status)
		c.Write(status[:9]) // a reply in two writes counts once, when whole
		synctest.Wait()
		if got := read.Load(); got != maxQueued+1 {
			t.Fatalf("%d requests read after one whole reply and half of another, want %d", got, maxQueued+1)
		}
		c.Write(status[9:])
		for range 3 {
			c.Write(status)
		}
		synctest.Wait()
		if got := read.Load(); got != sent {
			t.Fatalf("%d requests read after 5 replies, want all %d", got, sent)
		}
		// The end of the stream is read once there is room again, as pkg/sftp answers.
		for range maxQueued {
			c.Write(status)
		}
		if err := <-done; !errors.Is(err, io.EOF) {
			t.Fatalf("reader ended with %v, want EOF", err)
		}
	})
}

// A reader waiting for answers is released when the connection closes.
func TestQueuedWaitEndsOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var in []byte
		for i := range maxQueued + 1 {
			in = append(in, packet(16, binary.BigEndian.AppendUint32(nil, uint32(i)))...)
		}
		c := newLimitsConn(&memChannel{in: bytes.NewReader(in)})
		c.versioned = true
		done := make(chan error, 1)
		go func() {
			_, err := io.ReadAll(c)
			done <- err
		}()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("reader ended (%v) with %d requests unanswered", err, maxQueued)
		default:
		}
		c.Close()
		if err := <-done; err == nil {
			t.Fatal("reader ended without an error after Close")
		}
	})
}
