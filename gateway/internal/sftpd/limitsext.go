package sftpd

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
)

// OpenSSH's limits@openssh.com extension (PROTOCOL, section 4.8), which pkg/sftp does not
// implement: a server that lists it in its VERSION reply is asked for the largest packet, read
// and write it takes, and OpenSSH's sftp (8.7 and later, unless -B is given) then reads and
// writes in requests of that size instead of 32 KiB: fewer requests, status replies and
// read-reply headers per byte, each of which costs an SSH packet and a write(2) on both sides.
// limitsConn sits between the SSH channel and pkg/sftp: it adds the extension to the VERSION
// reply and answers the query itself; every other byte passes through unchanged.
//
// Nothing larger becomes possible: pkg/sftp has always accepted packets of 256 KiB and answered
// reads with up to maxTxPacket, whatever a client asks; the extension only tells clients so.
const (
	limitsExtName = "limits@openssh.com"

	fxpVersion       = 2
	fxpExtended      = 200
	fxpExtendedReply = 201

	// limitsMaxPacket is pkg/sftp's largest packet (its maxMsgLength), length field excluded.
	limitsMaxPacket = 256 << 10
	// limitsMaxData is the read and write size offered. 128 KiB, not pkg/sftp's 255 KiB: with
	// OpenSSH's 64 requests in flight, what a session holds in pkg/sftp's queues grows with it.
	// Measured with the four 1 GiB SFTP rows of bench-peers (upload chacha20, aes-gcm; download
	// chacha20, aes-gcm), gateway CPU-s per GiB and peak RSS MiB:
	//	32 KiB (no extension)  5.45 3.38 4.05 2.29   RSS 66 76 71 52
	//	64 KiB                 4.92 3.03 3.82 2.02   RSS 66 81 76 61
	//	128 KiB                4.66 2.71 3.52 1.90   RSS 72 80 74 64
	//	255 KiB                4.76 2.56 3.51 2.04   RSS 74 94 79 66
	limitsMaxData = 128 << 10
	// maxSniffed bounds the extended requests read whole to see their name; larger ones (none
	// that a client sends) pass through unread.
	maxSniffed = 4 << 10
)

// maxQueued is how many requests a session may have handed to pkg/sftp and not yet seen
// answered. pkg/sftp reads ahead into its queues (about 25 requests) whenever its 8 workers are
// busy, say waiting for transfer memory, and each request holds its data. With 128 KiB writes
// that made 50 concurrent uploads peak at 713 MiB RSS in bench-peers, against 410 MiB with
// 32 KiB writes; bounded at 16 they peaked at 619 MiB, at 8 at 512 MiB, with the same rates
// (205.7 MB/s for the 50) and the same CPU per GiB. 8 keeps every worker busy. While at the
// bound the channel is not read, as when pkg/sftp's own queues are full: the client waits on its
// SSH window.
const maxQueued = 8

// limitsConn is the SFTP stream between the channel and pkg/sftp. Read is called by pkg/sftp's
// one reading goroutine only; Write by any of its workers, one whole packet at a time under
// pkg/sftp's own lock, though a packet may come in several writes (header, then payload).
// Every request gets exactly one reply (SFTP has no others), which is how queued is counted.
type limitsConn struct {
	io.ReadWriteCloser

	// read side
	rbuf  []byte // bytes read from the channel and still to be handed to pkg/sftp
	rem   int    // bytes of the current packet to pass through after rbuf
	rerr  error  // the channel's error, returned once rbuf is empty
	sniff []byte // rbuf's backing array, reused for every packet

	// write side
	wmu       sync.Mutex
	versioned bool   // the VERSION reply was written (with the extension)
	vbuf      []byte // the VERSION reply as pkg/sftp writes it, until whole
	wlen      []byte // a packet's length field, until its 4 bytes are in
	wrem      int    // bytes of the current packet still to be written
	pending   []byte // our replies, written at the next packet boundary
	queued    int    // requests handed to pkg/sftp and not answered yet
	werr      error  // a failed write or Close: the reader stops waiting for answers
	answered  *sync.Cond
}

func newLimitsConn(rw io.ReadWriteCloser) *limitsConn {
	c := &limitsConn{ReadWriteCloser: rw}
	c.answered = sync.NewCond(&c.wmu)
	return c
}

// waitRoom blocks until fewer than maxQueued requests are unanswered, or writing failed.
func (c *limitsConn) waitRoom() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for c.queued >= maxQueued && c.werr == nil {
		c.answered.Wait()
	}
	if c.queued >= maxQueued {
		return c.werr
	}
	c.queued++ // the request about to be read
	return nil
}

// unqueue takes back the count of a request that was not handed on (answered here, or never
// read whole).
func (c *limitsConn) unqueue() {
	c.wmu.Lock()
	c.queued--
	c.answered.Broadcast()
	c.wmu.Unlock()
}

// Close wakes a reader waiting for answers that will not come. The channel closes first: a
// worker blocked writing to it (holding wmu) returns then.
func (c *limitsConn) Close() error {
	err := c.ReadWriteCloser.Close()
	c.wmu.Lock()
	if c.werr == nil {
		c.werr = io.ErrClosedPipe
	}
	c.answered.Broadcast()
	c.wmu.Unlock()
	return err
}

func (c *limitsConn) Read(p []byte) (int, error) {
	for {
		if len(c.rbuf) > 0 {
			n := copy(p, c.rbuf)
			c.rbuf = c.rbuf[n:]
			return n, nil
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		if c.rem > 0 {
			if len(p) > c.rem {
				p = p[:c.rem]
			}
			n, err := c.ReadWriteCloser.Read(p)
			c.rem -= n
			return n, err
		}
		if err := c.waitRoom(); err != nil {
			return 0, err
		}
		c.nextPacket()
	}
}

// nextPacket reads the next packet's start into rbuf. A limits query is answered and dropped;
// any other packet is handed on from its first byte, whole or as a header plus c.rem bytes.
func (c *limitsConn) nextPacket() {
	if c.sniff == nil {
		c.sniff = make([]byte, 5+maxSniffed)
	}
	hdr := c.sniff[:5] // length, type
	n, err := io.ReadFull(c.ReadWriteCloser, hdr)
	c.rbuf = hdr[:n]
	if err != nil { // io.EOF between packets, as pkg/sftp expects of a client gone
		c.unqueue()
		c.rerr = err
		return
	}
	// A length of 0 is malformed: the type byte read is the next packet's, and pkg/sftp
	// refuses the packet as it would have.
	length := int(binary.BigEndian.Uint32(hdr))
	if length == 0 {
		return
	}
	c.rem = length - 1
	if hdr[4] != fxpExtended || c.rem > maxSniffed {
		return
	}
	body := c.sniff[5 : 5+c.rem]
	n, err = io.ReadFull(c.ReadWriteCloser, body)
	c.rem = 0
	c.rbuf = c.sniff[:5+n]
	if err != nil {
		if errors.Is(err, io.EOF) { // inside a packet: its header was read
			err = io.ErrUnexpectedEOF
		}
		c.unqueue()
		c.rerr = err
		return
	}
	if id, ok := limitsQuery(body); ok {
		c.rbuf = nil
		c.unqueue()
		c.reply(limitsReply(id))
	}
}

// limitsQuery reports whether an extended request's body (after the type) is a limits query,
// and its id.
func limitsQuery(body []byte) (uint32, bool) {
	if len(body) < 8 {
		return 0, false
	}
	id := binary.BigEndian.Uint32(body)
	nameLen := int(binary.BigEndian.Uint32(body[4:]))
	if nameLen != len(limitsExtName) || len(body) < 8+nameLen || string(body[8:8+nameLen]) != limitsExtName {
		return 0, false
	}
	return id, true
}

// limitsReply is the SSH_FXP_EXTENDED_REPLY to a limits query: max packet, read and write
// lengths, and open handles (0: no limit of its own, so OpenSSH keeps its 64 requests in flight).
func limitsReply(id uint32) []byte {
	b := make([]byte, 0, 4+1+4+4*8)
	b = binary.BigEndian.AppendUint32(b, 1+4+4*8)
	b = append(b, fxpExtendedReply)
	b = binary.BigEndian.AppendUint32(b, id)
	for _, v := range []uint64{limitsMaxPacket, limitsMaxData, limitsMaxData, 0} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

// reply writes one of our packets between pkg/sftp's packets.
func (c *limitsConn) reply(pkt []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.pending = append(c.pending, pkt...)
	if c.versioned {
		c.flushPending()
	}
}

func (c *limitsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.versioned {
		return c.writeVersion(p)
	}
	n, err := c.ReadWriteCloser.Write(p)
	c.track(p[:n])
	if err != nil {
		c.failed(err)
		return n, err
	}
	c.flushPending()
	return n, err
}

// failed records a write error: no answer will be written any more.
func (c *limitsConn) failed(err error) {
	if c.werr == nil {
		c.werr = err
	}
	c.answered.Broadcast()
}

// flushPending writes our queued replies once pkg/sftp's packet is whole.
func (c *limitsConn) flushPending() {
	if c.wrem > 0 || len(c.wlen) > 0 || len(c.pending) == 0 {
		return
	}
	pending := c.pending
	c.pending = nil
	// An error here is the channel's: pkg/sftp's next write or read meets it too.
	_, _ = c.ReadWriteCloser.Write(pending)
}

// track follows the packet boundaries in what pkg/sftp wrote.
func (c *limitsConn) track(p []byte) {
	for len(p) > 0 {
		if c.wrem > 0 {
			k := min(c.wrem, len(p))
			c.wrem -= k
			p = p[k:]
			if c.wrem == 0 {
				c.answer()
			}
			continue
		}
		k := min(4-len(c.wlen), len(p))
		c.wlen = append(c.wlen, p[:k]...)
		p = p[k:]
		if len(c.wlen) == 4 {
			c.wrem = int(binary.BigEndian.Uint32(c.wlen))
			c.wlen = c.wlen[:0]
			if c.wrem == 0 {
				c.answer()
			}
		}
	}
}

// answer counts one of pkg/sftp's replies written whole.
func (c *limitsConn) answer() {
	c.queued--
	c.answered.Broadcast()
}

// writeVersion collects pkg/sftp's first packet, the VERSION reply, and writes it with the
// extension added to the ones pkg/sftp lists.
func (c *limitsConn) writeVersion(p []byte) (int, error) {
	c.vbuf = append(c.vbuf, p...)
	if len(c.vbuf) < 5 {
		return len(p), nil
	}
	total := 4 + int(binary.BigEndian.Uint32(c.vbuf))
	if len(c.vbuf) < total {
		return len(p), nil
	}
	pkt, rest := c.vbuf[:total], c.vbuf[total:]
	if pkt[4] == fxpVersion {
		ext := make([]byte, 0, len(pkt)+8+len(limitsExtName)+1)
		ext = append(ext, pkt...)
		ext = appendString(ext, limitsExtName)
		ext = appendString(ext, "1")
		binary.BigEndian.PutUint32(ext, uint32(len(ext)-4))
		pkt = ext
	}
	c.versioned = true
	out := append(pkt, rest...)
	c.vbuf = nil
	if _, err := c.ReadWriteCloser.Write(out); err != nil {
		c.failed(err)
		return 0, err
	}
	c.answer() // the VERSION, to INIT
	c.track(rest)
	c.flushPending()
	return len(p), nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
