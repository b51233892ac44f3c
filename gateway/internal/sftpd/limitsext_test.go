package sftpd_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/ferryproc"
)

// SFTP packet types and the extension, as the protocol numbers them.
const (
	fxpVersion       = 2
	fxpExtended      = 200
	fxpExtendedReply = 201
	limitsExtName    = "limits@openssh.com"
	limitsData       = 128 << 10 // the read and write size the server offers
)

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// rawSFTP speaks SFTP by hand over a real SSH session to the server, to see the bytes
// limitsConn adds and passes through.
type rawSFTP struct {
	in  io.WriteCloser
	out *bufio.Reader
}

func newRawSFTP(t *testing.T, e *env) *rawSFTP {
	t.Helper()
	c, err := ssh.Dial("tcp", e.srv.Addr, e.srv.ClientConfig("alice", e.pubkey()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	in, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestSubsystem("sftp"); err != nil {
		t.Fatal(err)
	}
	return &rawSFTP{in: in, out: bufio.NewReader(out)}
}

// send writes one packet of type typ with body, in two writes split at split (a client may
// cut its packets anywhere).
func (r *rawSFTP) send(t *testing.T, typ byte, body []byte, split int) {
	t.Helper()
	pkt := binary.BigEndian.AppendUint32(nil, uint32(1+len(body)))
	pkt = append(pkt, typ)
	pkt = append(pkt, body...)
	split = min(split, len(pkt))
	for _, part := range [][]byte{pkt[:split], pkt[split:]} {
		if _, err := r.in.Write(part); err != nil {
			t.Fatal(err)
		}
	}
}

// recv reads one packet: its type and body.
func (r *rawSFTP) recv(t *testing.T) (byte, []byte) {
	t.Helper()
	var hdr [4]byte
	if _, err := io.ReadFull(r.out, hdr[:]); err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(r.out, pkt); err != nil {
		t.Fatal(err)
	}
	return pkt[0], pkt[1:]
}

func extended(id uint32, name string, rest ...byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, id)
	return append(appendString(b, name), rest...)
}

// readStrings reads n SFTP strings from b.
func readStrings(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for len(b) > 0 {
		if len(b) < 4 || len(b) < 4+int(binary.BigEndian.Uint32(b)) {
			t.Fatalf("truncated string list: %x", b)
		}
		n := int(binary.BigEndian.Uint32(b))
		out = append(out, string(b[4:4+n]))
		b = b[4+n:]
	}
	return out
}

func TestLimitsExtension(t *testing.T) {
	e := newEnv(t)
	r := newRawSFTP(t, e)

	r.send(t, 1, binary.BigEndian.AppendUint32(nil, 3), 2) // INIT, version 3
	typ, body := r.recv(t)
	if typ != fxpVersion || binary.BigEndian.Uint32(body) != 3 {
		t.Fatalf("answer to INIT: type %d %x, want VERSION 3", typ, body)
	}
	exts := readStrings(t, body[4:])
	if !strings.Contains(strings.Join(exts, " "), "posix-rename@openssh.com 1") ||
		!strings.Contains(strings.Join(exts, " "), limitsExtName+" 1") {
		t.Fatalf("VERSION lists %q, want pkg/sftp's extensions and %s 1", exts, limitsExtName)
	}

	for i, split := range []int{3, 7, 100} { // the query's bytes arrive cut in different places
		id := uint32(10 + i)
		r.send(t, fxpExtended, extended(id, limitsExtName), split)
		typ, body = r.recv(t)
		if typ != fxpExtendedReply || len(body) != 4+4*8 || binary.BigEndian.Uint32(body) != id {
			t.Fatalf("answer to the limits query: type %d %x", typ, body)
		}
		var got [4]uint64
		for j := range got {
			got[j] = binary.BigEndian.Uint64(body[4+8*j:])
		}
		if want := [4]uint64{256 << 10, limitsData, limitsData, 0}; got != want {
			t.Fatalf("limits %v, want %v (packet, read, write, handles)", got, want)
		}
	}

	// Everything else still reaches pkg/sftp: an extended request it does not know (read whole
	// to see its name), and a plain request.
	r.send(t, fxpExtended, extended(20, "limits@example.com", 1, 2, 3), 5)
	if typ, body = r.recv(t); typ != 101 || binary.BigEndian.Uint32(body) != 20 || binary.BigEndian.Uint32(body[4:]) != 8 {
		t.Fatalf("answer to an unknown extended request: type %d %x, want STATUS 8 (op unsupported)", typ, body)
	}
	r.send(t, 16, appendString(binary.BigEndian.AppendUint32(nil, 21), "."), 6) // REALPATH "."
	if typ, body = r.recv(t); typ != 104 || binary.BigEndian.Uint32(body) != 21 {
		t.Fatalf("answer to REALPATH: type %d %x, want NAME", typ, body)
	}
}

// OpenSSH's sftp asks for the limits and moves files in requests of the size offered; what it
// sends and gets back is byte for byte the same.
func TestOpenSSHUsesLimits(t *testing.T) {
	e := newEnv(t)
	o := newOpenSSH(t, e, "alice")
	data := randomBytes(77, 3<<20+12345)
	o.writeLocal(t, "f.bin", data)
	out := o.mustRun(t, "put f.bin /f.bin\nget /f.bin back.bin\n", "-vvv")
	want := fmt.Sprintf("using %d / %d", limitsData, limitsData)
	if !strings.Contains(out, want) {
		t.Fatalf("sftp -vvv does not say %q:\n%s", want, ferryproc.Tail(out, 4000))
	}
	stored, err := e.mem.ReadFile("/f.bin")
	if err != nil || sha(stored) != sha(data) {
		t.Fatalf("stored %d bytes (%v), want %d with the same SHA-256", len(stored), err, len(data))
	}
	if got := o.readLocal(t, "back.bin"); sha(got) != sha(data) {
		t.Fatalf("downloaded %d bytes, want %d with the same SHA-256", len(got), len(data))
	}
}
