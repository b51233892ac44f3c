// Package proxyproto reads the PROXY protocol header (versions 1 and 2, HAProxy's
// proxy-protocol.txt) that a load balancer such as AWS's Network Load Balancer puts in front of
// each connection it forwards, so the gateway sees the client's address and the address the
// client dialed instead of the load balancer's.
//
// The header is read with exact-length reads (16 bytes, then the length it announces; a v1
// line byte by byte), never past its end: what follows belongs to the protocol behind it (an
// SSH banner, a TLS ClientHello) and stays in the socket, so the connection handed on can be
// the *net.TCPConn itself. Reads are bounded in size and time (Config.HeaderTimeout).
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// Header is what a PROXY header says about a connection.
type Header struct {
	Version int // 1 or 2
	// Local is true when the header carries no client addresses: a v2 LOCAL command (the proxy's
	// own connection, e.g. a health check), or an UNKNOWN/UNSPEC/UNIX family. The connection's
	// real endpoints then stand.
	Local bool
	// Src is the client's address, Dst the address the client dialed (the load balancer's
	// listener). Both are unmapped (an IPv4 client is an IPv4 address).
	Src, Dst netip.AddrPort
}

// Limits of what ReadHeader accepts.
const (
	// maxV1Line is the longest v1 line the specification allows, CRLF included.
	maxV1Line = 107
	// MaxV2Payload bounds the v2 address block and TLVs. Proxies send far less (an NLB adds a
	// VPC endpoint TLV to the 12 or 36 address bytes); the specification lets a receiver refuse
	// what it cannot buffer.
	MaxV2Payload = 2048
)

var v2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// ErrNoHeader means the connection does not start with a PROXY header.
var ErrNoHeader = errors.New("proxyproto: no PROXY protocol header")

// ReadHeader reads one PROXY header (v1 or v2) from r, consuming exactly its bytes. It returns
// ErrNoHeader (wrapped) when r starts with something else, and a descriptive error for a
// malformed header.
func ReadHeader(r io.Reader) (Header, error) {
	h, _, err := readHeader(r)
	return h, err
}

// readHeader is ReadHeader that also returns every byte it consumed, so that a caller for whom
// the header is optional can hand them back to the protocol behind it (see Conn).
func readHeader(r io.Reader) (Header, []byte, error) {
	var consumed []byte
	read := func(n int) ([]byte, error) {
		start := len(consumed)
		consumed = append(consumed, make([]byte, n)...)
		got, err := io.ReadFull(r, consumed[start:])
		consumed = consumed[:start+got]
		if err != nil {
			return nil, fmt.Errorf("proxyproto: read header: %w", err)
		}
		return consumed[start:], nil
	}
	first, err := read(1)
	if err != nil {
		return Header{}, consumed, err
	}
	switch first[0] {
	case v2Signature[0]:
		rest, err := read(len(v2Signature) - 1)
		if err != nil {
			return Header{}, consumed, err
		}
		if !bytes.Equal(rest, v2Signature[1:]) {
			return Header{}, consumed, ErrNoHeader
		}
		h, err := readV2(read)
		return h, consumed, err
	case 'P':
		rest, err := read(5)
		if err != nil {
			return Header{}, consumed, err
		}
		if string(rest) != "ROXY " {
			return Header{}, consumed, ErrNoHeader
		}
		h, err := readV1(read)
		return h, consumed, err
	}
	return Header{}, consumed, ErrNoHeader
}

// readV2 parses what follows the 12-byte signature.
func readV2(read func(int) ([]byte, error)) (Header, error) {
	fixed, err := read(4)
	if err != nil {
		return Header{}, err
	}
	verCmd, fam, n := fixed[0], fixed[1], int(binary.BigEndian.Uint16(fixed[2:4]))
	if verCmd>>4 != 2 {
		return Header{}, fmt.Errorf("proxyproto: v2 header with version %d", verCmd>>4)
	}
	cmd := verCmd & 0x0f
	if cmd > 1 {
		return Header{}, fmt.Errorf("proxyproto: v2 header with unknown command %d", cmd)
	}
	if n > MaxV2Payload {
		return Header{}, fmt.Errorf("proxyproto: v2 header of %d bytes (at most %d accepted)", n, MaxV2Payload)
	}
	payload, err := read(n)
	if err != nil {
		return Header{}, err
	}
	h := Header{Version: 2, Local: true}
	if cmd == 0 { // LOCAL: the proxy's own connection; whatever follows is ignored
		return h, nil
	}
	af, proto := fam>>4, fam&0x0f
	if af == 1 || af == 2 { // INET, INET6
		if proto != 1 {
			return Header{}, fmt.Errorf("proxyproto: v2 header for transport %d, only TCP (stream) is served", proto)
		}
	}
	switch af {
	case 0, 3: // UNSPEC, UNIX: no address the gateway can use; the connection's own stand
		return h, nil
	case 1:
		if n < 12 {
			return Header{}, fmt.Errorf("proxyproto: v2 IPv4 header of %d bytes, want at least 12", n)
		}
		src, _ := netip.AddrFromSlice(payload[0:4])
		dst, _ := netip.AddrFromSlice(payload[4:8])
		h.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(payload[8:10]))
		h.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(payload[10:12]))
	case 2:
		if n < 36 {
			return Header{}, fmt.Errorf("proxyproto: v2 IPv6 header of %d bytes, want at least 36", n)
		}
		src, _ := netip.AddrFromSlice(payload[0:16])
		dst, _ := netip.AddrFromSlice(payload[16:32])
		h.Src = netip.AddrPortFrom(src.Unmap(), binary.BigEndian.Uint16(payload[32:34]))
		h.Dst = netip.AddrPortFrom(dst.Unmap(), binary.BigEndian.Uint16(payload[34:36]))
	default:
		return Header{}, fmt.Errorf("proxyproto: v2 header with unknown address family %d", af)
	}
	h.Local = false
	return h, nil
}

// readV1 parses what follows "PROXY ": "TCP4 src dst sport dport\r\n" (or TCP6, or UNKNOWN
// followed by anything), one byte at a time so nothing after the CRLF is consumed.
func readV1(read func(int) ([]byte, error)) (Header, error) {
	var line []byte
	for {
		b, err := read(1)
		if err != nil {
			return Header{}, err
		}
		line = append(line, b[0])
		if b[0] == '\n' {
			break
		}
		if len(line)+len("PROXY ") >= maxV1Line {
			return Header{}, fmt.Errorf("proxyproto: v1 header longer than %d bytes", maxV1Line)
		}
	}
	text, ok := strings.CutSuffix(string(line), "\r\n")
	if !ok {
		return Header{}, errors.New("proxyproto: v1 header not ended by CRLF")
	}
	f := strings.Split(text, " ")
	if f[0] == "UNKNOWN" {
		return Header{Version: 1, Local: true}, nil
	}
	if len(f) != 5 || f[0] != "TCP4" && f[0] != "TCP6" {
		return Header{}, fmt.Errorf("proxyproto: malformed v1 header %q", "PROXY "+text)
	}
	src, err1 := parseV1Addr(f[1], f[3], f[0] == "TCP4")
	dst, err2 := parseV1Addr(f[2], f[4], f[0] == "TCP4")
	if err := errors.Join(err1, err2); err != nil {
		return Header{}, fmt.Errorf("proxyproto: v1 header %q: %w", "PROXY "+text, err)
	}
	return Header{Version: 1, Src: src, Dst: dst}, nil
}

func parseV1Addr(ip, port string, v4 bool) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" || a.Is4() != v4 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", ip)
	}
	// Decimal without sign or leading zeros, as the specification writes them.
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || port != strconv.FormatUint(p, 10) {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", port)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
}

// Format encodes h as a version-1 or version-2 header (for tests and tools that speak to a
// PROXY-protocol listener; the gateway itself only reads them).
func (h Header) Format(version int) []byte {
	if version == 1 {
		if h.Local || !h.Src.IsValid() {
			return []byte("PROXY UNKNOWN\r\n")
		}
		fam := "TCP4"
		if !h.Src.Addr().Is4() {
			fam = "TCP6"
		}
		return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", fam, h.Src.Addr(), h.Dst.Addr(), h.Src.Port(), h.Dst.Port())
	}
	out := append([]byte(nil), v2Signature...)
	if h.Local || !h.Src.IsValid() {
		return append(out, 0x20, 0x00, 0, 0)
	}
	src, dst := h.Src.Addr(), h.Dst.Addr()
	if src.Is4() && dst.Is4() {
		out = append(out, 0x21, 0x11, 0, 12)
		out = append(out, src.AsSlice()...)
		out = append(out, dst.AsSlice()...)
	} else {
		out = append(out, 0x21, 0x21, 0, 36)
		s16, d16 := src.As16(), dst.As16()
		out = append(out, s16[:]...)
		out = append(out, d16[:]...)
	}
	out = binary.BigEndian.AppendUint16(out, h.Src.Port())
	return binary.BigEndian.AppendUint16(out, h.Dst.Port())
}
