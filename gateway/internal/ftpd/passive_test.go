package ftpd

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// freeRange returns n consecutive ports that were free a moment ago on every host (127.0.0.1
// when none is given).
func freeRange(t *testing.T, n int, hosts ...string) PortRange {
	t.Helper()
	start := testtool.FreePortRange(t, n, hosts...)
	return PortRange{Start: start, End: start + n - 1}
}

// listening returns the addresses this process listens on (Linux /proc).
func listening(t *testing.T) []netip.AddrPort {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err) // not Linux; the reply and dial checks still run elsewhere
	}
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []netip.AddrPort
	for _, file := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] { // 0A: LISTEN
				continue
			}
			hostHex, portHex, _ := strings.Cut(fields[1], ":")
			raw, _ := hex.DecodeString(hostHex)
			for i := 0; i+4 <= len(raw); i += 4 { // /proc prints each 32-bit word in host order
				raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
			}
			ip, _ := netip.AddrFromSlice(raw)
			port, _ := strconv.ParseUint(portHex, 16, 16)
			out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(port)))
		}
		f.Close()
	}
	return out
}

// With the control listener on 127.0.0.1, a passive data port is bound to 127.0.0.1 too: no
// socket of the process listens on every interface, a connection to another local address on
// that port is refused, and transfers go through it.
func TestPassiveBindsToControlAddress(t *testing.T) {
	pr := freeRange(t, 2)
	e := startEnv(t, Config{PassivePorts: pr, TLS: TLSConfig{Mode: TLSOptional}})
	r := dialRaw(t, e.addr)
	r.login(testUser, testPass)
	if err := e.mem.WriteFile("/seen.txt", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"EPSV", "PASV"} {
		t.Run(cmd, func(t *testing.T) {
			var port int
			if cmd == "EPSV" {
				m := epsvRe.FindStringSubmatch(r.expect(229, "EPSV"))
				port, _ = strconv.Atoi(m[1])
			} else {
				msg := r.expect(227, "PASV")
				f := strings.Split(strings.Trim(msg[strings.Index(msg, "("):], "()."), ",")
				hi, _ := strconv.Atoi(f[4])
				lo, _ := strconv.Atoi(f[5])
				port = hi*256 + lo
			}
			if port < pr.Start || port > pr.End {
				t.Fatalf("%s port %d outside %v", cmd, port, pr)
			}
			for _, a := range listening(t) {
				if a.Addr().IsUnspecified() {
					t.Errorf("the process listens on %s, every interface", a)
				}
				if int(a.Port()) == port && a.Addr() != netip.MustParseAddr("127.0.0.1") {
					t.Errorf("passive port %d is bound to %s, not the control address", port, a.Addr())
				}
			}
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.2:%d", port), 2*time.Second); err == nil {
				c.Close()
				t.Errorf("the passive port %d accepted a connection to 127.0.0.2", port)
			}
			d, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			r.send("NLST")
			if code, msg := r.read(); code != 150 {
				t.Fatalf("NLST: %d %s", code, msg)
			}
			b, _ := io.ReadAll(d)
			if code, msg := r.read(); code != 226 || !strings.Contains(string(b), "seen.txt") {
				t.Fatalf("NLST: %d %s, %q", code, msg, b)
			}
		})
	}
}

// When every passive port is taken, PASV and EPSV get a 425 that says so (not the library's
// 421, which tells the client the service is going away) and the exhaustion is counted; a port
// is usable again once its session ends.
func TestPassivePortsExhausted(t *testing.T) {
	pr := freeRange(t, 2)
	e := startEnv(t, Config{PassivePorts: pr, TLS: TLSConfig{Mode: TLSOptional}})
	clients := make([]*rawClient, 3)
	for i := range clients {
		clients[i] = dialRaw(t, e.addr)
		clients[i].login(testUser, testPass)
	}
	clients[0].expect(229, "EPSV")
	clients[1].expect(227, "PASV")
	for _, cmd := range []string{"EPSV", "PASV"} {
		code, msg := clients[2].cmd("%s", cmd)
		if code != 425 || !strings.Contains(msg, "passive") {
			t.Errorf("%s with every passive port taken: %d %s, want 425 saying why", cmd, code, msg)
		}
	}
	if n := e.srv.PassivePortsExhausted(); n != 2 {
		t.Errorf("exhaustion counter = %d, want 2", n)
	}
	if n := e.srv.PassivePortsInUse(); n != 2 {
		t.Errorf("ports in use = %d, want 2", n)
	}
	clients[0].cmd("QUIT")
	clients[0].close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, msg := clients[2].cmd("EPSV")
		if code == 229 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("EPSV 5s after a session holding a port ended: %d %s", code, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
