package proxyproto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

// v2 builds a v2 header from its parts (hex strings), for malformed cases Format cannot make.
func v2(t testing.TB, verCmd, fam byte, payloadHex string) []byte {
	t.Helper()
	payload, err := hex.DecodeString(strings.ReplaceAll(payloadHex, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte(nil), v2Signature...)
	out = append(out, verCmd, fam, byte(len(payload)>>8), byte(len(payload)))
	return append(out, payload...)
}

func TestReadHeader(t *testing.T) {
	ap := netip.MustParseAddrPort
	tcp4 := Header{Version: 2, Src: ap("203.0.113.7:51234"), Dst: ap("10.0.1.5:21")}
	tcp6 := Header{Version: 2, Src: ap("[2001:db8::7]:51234"), Dst: ap("[2001:db8::1]:990")}
	cases := []struct {
		name    string
		in      []byte
		want    Header
		wantErr string // substring; "" = success
		cut     bool   // the connection ends right after in (no bytes follow)
	}{
		{name: "v2 IPv4", in: tcp4.Format(2), want: tcp4},
		{name: "v2 IPv6", in: tcp6.Format(2), want: tcp6},
		{name: "v2 IPv4 with TLVs (NLB's VPC endpoint id)",
			in:   v2(t, 0x21, 0x11, "cb007107 0a000105 c822 0015 ea000a 01766670652d3132333435"),
			want: tcp4},
		{name: "v2 LOCAL (a health check)", in: v2(t, 0x20, 0x00, ""), want: Header{Version: 2, Local: true}},
		{name: "v2 LOCAL with addresses ignored", in: v2(t, 0x20, 0x11, "cb007105 0a000105 c822 0015"), want: Header{Version: 2, Local: true}},
		{name: "v2 UNSPEC", in: v2(t, 0x21, 0x00, ""), want: Header{Version: 2, Local: true}},
		{name: "v2 UNIX", in: v2(t, 0x21, 0x31, strings.Repeat("00", 216)), want: Header{Version: 2, Local: true}},
		{name: "v2 IPv4-mapped IPv6 is IPv4",
			in:   v2(t, 0x21, 0x21, "00000000000000000000ffffcb007107 00000000000000000000ffff0a000105 c822 0015"),
			want: Header{Version: 2, Src: ap("203.0.113.7:51234"), Dst: ap("10.0.1.5:21")}},
		{name: "v1 TCP4", in: []byte("PROXY TCP4 203.0.113.7 10.0.1.5 51234 21\r\n"), want: Header{Version: 1, Src: ap("203.0.113.7:51234"), Dst: ap("10.0.1.5:21")}},
		{name: "v1 TCP6", in: []byte("PROXY TCP6 2001:db8::7 2001:db8::1 51234 990\r\n"), want: Header{Version: 1, Src: ap("[2001:db8::7]:51234"), Dst: ap("[2001:db8::1]:990")}},
		{name: "v1 UNKNOWN", in: []byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), want: Header{Version: 1, Local: true}},
		{name: "v1 longest line", in: []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
			want: Header{Version: 1, Src: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), Dst: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}},

		{name: "SSH banner", in: []byte("SSH-2.0-OpenSSH_9.2\r\n"), wantErr: "no PROXY protocol header"},
		{name: "TLS ClientHello", in: []byte{0x16, 0x03, 0x01, 0x02, 0x00}, wantErr: "no PROXY protocol header"},
		{name: "HTTP POST", in: []byte("POST / HTTP/1.1\r\n"), wantErr: "no PROXY protocol header"},
		{name: "CR but not the v2 signature", in: []byte("\r\n\r\nGET / HTTP/1.0\r\n"), wantErr: "no PROXY protocol header"},
		{name: "empty", in: nil, cut: true, wantErr: "EOF"},
		{name: "v2 cut short", in: tcp4.Format(2)[:20], cut: true, wantErr: "unexpected EOF"},
		{name: "v1 cut short", in: []byte("PROXY TCP4 1.2"), cut: true, wantErr: "EOF"},
		{name: "v2 version 1", in: v2(t, 0x11, 0x11, "cb007105 0a000105 c822 0015"), wantErr: "version 1"},
		{name: "v2 unknown command", in: v2(t, 0x22, 0x11, "cb007105 0a000105 c822 0015"), wantErr: "unknown command"},
		{name: "v2 UDP", in: v2(t, 0x21, 0x12, "cb007105 0a000105 c822 0015"), wantErr: "only TCP"},
		{name: "v2 IPv4 too short", in: v2(t, 0x21, 0x11, "cb007105 0a000105"), wantErr: "want at least 12"},
		{name: "v2 IPv6 too short", in: v2(t, 0x21, 0x21, "cb007105 0a000105 c822 0015"), wantErr: "want at least 36"},
		{name: "v2 unknown family", in: v2(t, 0x21, 0x41, ""), wantErr: "unknown address family"},
		{name: "v2 over the size limit", in: append(v2Signature, 0x21, 0x11, 0x08, 0x01), wantErr: "at most 2048"},
		{name: "v1 without CRLF", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), wantErr: "CRLF"},
		{name: "v1 too long", in: []byte("PROXY " + strings.Repeat("A", 200) + "\r\n"), wantErr: "longer than 107"},
		{name: "v1 IPv6 in TCP4", in: []byte("PROXY TCP4 2001:db8::7 10.0.1.5 1 2\r\n"), wantErr: "bad address"},
		{name: "v1 port with a sign", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), wantErr: "bad port"},
		{name: "v1 port out of range", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"), wantErr: "bad port"},
		{name: "v1 missing field", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), wantErr: "malformed"},
		{name: "v1 unknown family", in: []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), wantErr: "malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// What follows the header must stay unread: it belongs to the protocol behind it.
			in := append([]byte(nil), tc.in...)
			if !tc.cut {
				in = append(in, "SSH-2.0-next"...)
			}
			r := bytes.NewReader(in)
			h, err := ReadHeader(r)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(tc.wantErr, "no PROXY") && !errors.Is(err, ErrNoHeader) {
					t.Errorf("err %v does not match ErrNoHeader", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h != tc.want {
				t.Errorf("header = %+v, want %+v", h, tc.want)
			}
			if rest, _ := io.ReadAll(r); string(rest) != "SSH-2.0-next" {
				t.Errorf("left %q after the header, want exactly what followed it", rest)
			}
		})
	}
}

// Decoding arbitrary bytes never panics, never reads past what it reports consuming, and a
// decoded header encodes back to one that decodes the same.
func FuzzReadHeader(f *testing.F) {
	ap := netip.MustParseAddrPort
	for _, h := range []Header{
		{Src: ap("203.0.113.7:51234"), Dst: ap("10.0.1.5:21")},
		{Src: ap("[2001:db8::7]:1"), Dst: ap("[2001:db8::1]:990")},
		{Local: true},
	} {
		f.Add(h.Format(1))
		f.Add(h.Format(2))
	}
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nrest"))
	f.Add([]byte("SSH-2.0-x\r\n"))
	f.Add(append(append([]byte(nil), v2Signature...), 0x21, 0x11, 0x00, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0xea, 0, 1, 9))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, consumed, err := readHeader(r)
		if len(consumed)+r.Len() != len(data) || !bytes.Equal(consumed, data[:len(consumed)]) {
			t.Fatalf("consumed %d bytes, %d left of %d", len(consumed), r.Len(), len(data))
		}
		if len(consumed) > 16+MaxV2Payload {
			t.Fatalf("consumed %d bytes", len(consumed))
		}
		if err != nil {
			return
		}
		if h.Version != 1 && h.Version != 2 {
			t.Fatalf("version %d", h.Version)
		}
		if h.Local {
			return
		}
		for _, v := range []int{1, 2} {
			if v == 1 && h.Src.Addr().Is4() != h.Dst.Addr().Is4() {
				continue // v1 has one family for both addresses
			}
			again, err := ReadHeader(bytes.NewReader(h.Format(v)))
			if err != nil {
				t.Fatalf("re-read of %+v as v%d: %v", h, v, err)
			}
			if again.Src != h.Src || again.Dst != h.Dst || again.Local {
				t.Fatalf("v%d round trip: %+v -> %+v", v, h, again)
			}
		}
	})
}
