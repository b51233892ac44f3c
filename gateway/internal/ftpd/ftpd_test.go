package ftpd

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
)

func replyCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func TestLogin(t *testing.T) {
	e := startEnv(t, Config{})
	c := e.dial(true, testUser)
	if dir, err := c.CurrentDir(); err != nil || dir != "/" {
		t.Fatalf("PWD = %q, %v", dir, err)
	}

	_, err := e.tryDial(true, testUser, "wrong")
	if code := replyCode(err); code != 530 {
		t.Fatalf("wrong password: %v (code %d), want 530", err, code)
	}
	_, err = e.tryDial(true, "nobody", testPass)
	if code := replyCode(err); code != 530 {
		t.Fatalf("unknown user: %v (code %d), want 530", err, code)
	}
	if !hasLine(e.logs.String(), "login failed") {
		t.Error("failed logins are not logged")
	}
}

func TestPlaintextLoginRefusedWhenTLSRequired(t *testing.T) {
	e := startEnv(t, Config{}) // TLS mode defaults to required
	r := dialRaw(t, e.addr)
	code, msg := r.cmd("USER %s", testUser)
	if code != 530 || !strings.Contains(msg, "TLS") {
		t.Fatalf("plaintext USER: %d %s, want 530 mentioning TLS", code, msg)
	}

	// Clear data connections are refused too once logged in over TLS.
	r = dialRaw(t, e.addr)
	r.authTLS()
	r.expect(331, "USER %s", testUser)
	r.expect(230, "PASS %s", testPass)
	r.expect(200, "PROT C")
	if err := e.mem.WriteFile("/there.txt", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// Every command that would move data over the clear channel is refused with a permanent
	// 5xx: lftp and others retry a 4xx forever.
	for _, c := range []string{"LIST", "NLST", "MLSD", "LIST /missing", "RETR there.txt", "STOR clear.bin", "APPE clear.bin"} {
		r.openData(false)
		if code, msg := r.cmd("%s", c); code != 521 || !strings.Contains(msg, "PROT P") {
			t.Errorf("%s over a clear data connection: %d %s, want 521 asking for PROT P", c, code, msg)
		}
	}
	e.assertNothingStored("/clear.bin")
	// Protected, the same session lists.
	r.expect(200, "PBSZ 0")
	r.expect(200, "PROT P")
	_, data := r.openData(true)
	r.send("NLST")
	if code, msg := r.read(); code != 150 {
		t.Fatalf("NLST over TLS: %d %s", code, msg)
	}
	b, _ := io.ReadAll(data)
	if code, msg := r.read(); code != 226 || !strings.Contains(string(b), "there.txt") {
		t.Fatalf("NLST over TLS: %d %s, listing %q", code, msg, b)
	}
}

func TestOptionalTLSAcceptsBoth(t *testing.T) {
	e := startEnv(t, Config{TLS: TLSConfig{Mode: TLSOptional}})
	if !hasLine(e.logs.String(), "plaintext passwords") {
		t.Error("optional TLS does not warn at start")
	}
	for _, tlsOn := range []bool{false, true} {
		c := e.dial(tlsOn, testUser)
		name := "f-" + strconv.FormatBool(tlsOn)
		if err := c.Stor(name, strings.NewReader("hello")); err != nil {
			t.Fatal(err)
		}
		opts, ok := e.mem.CreateOptions("/" + name)
		want := map[bool]string{false: "ftp", true: "ftps"}[tlsOn]
		if !ok || opts.Protocol != want || opts.User != testUser || opts.TransferID == "" || opts.ClientAddr == "" {
			t.Fatalf("tls=%v: stored options %+v, want protocol %s", tlsOn, opts, want)
		}
	}
}

func TestUploadDownloadSizes(t *testing.T) {
	e := startEnv(t, Config{})
	c := e.dial(true, testUser)
	if err := c.MakeDir("/sizes"); err != nil {
		t.Fatal(err)
	}
	const part = 8 << 20
	for _, n := range []int{0, 1, part - 1, part, part + 1, 40 << 20} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			data := randomData(t, n)
			name := "/sizes/f" + strconv.Itoa(n)
			if err := c.Stor(name, bytes.NewReader(data)); err != nil {
				t.Fatalf("STOR: %v", err)
			}
			stored, err := e.mem.ReadFile(name)
			if err != nil || sha(stored) != sha(data) {
				t.Fatalf("stored %d bytes (err %v), want %d with the same SHA-256", len(stored), err, n)
			}
			if size, err := c.FileSize(name); err != nil || size != int64(n) {
				t.Fatalf("SIZE = %d, %v", size, err)
			}
			r, err := c.Retr(name)
			if err != nil {
				t.Fatalf("RETR: %v", err)
			}
			if got := readAll(t, r); sha(got) != sha(data) {
				t.Fatalf("downloaded %d bytes with a different SHA-256", len(got))
			}
		})
	}
}

func TestListing(t *testing.T) {
	e := startEnv(t, Config{})
	if err := e.mem.WriteFile("/docs/a.txt", []byte("12345")); err != nil {
		t.Fatal(err)
	}
	if err := e.mem.WriteFile("/docs/sub/b.txt", []byte("1")); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"MLSD", "LIST", "LIST -a"} {
		t.Run(mode, func(t *testing.T) {
			c := e.dial(true, testUser, ftp.DialWithDisabledMLSD(mode != "MLSD"), ftp.DialWithForceListHidden(mode == "LIST -a"))
			entries, err := c.List("/docs")
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]*ftp.Entry{}
			for _, en := range entries {
				got[en.Name] = en
			}
			a, sub := got["a.txt"], got["sub"]
			if len(got) != 2 || a == nil || sub == nil {
				t.Fatalf("listing %v, want a.txt and sub", entries)
			}
			if a.Type != ftp.EntryTypeFile || a.Size != 5 || sub.Type != ftp.EntryTypeFolder {
				t.Fatalf("a.txt %+v, sub %+v", a, sub)
			}
			if time.Since(a.Time) > time.Hour || time.Until(a.Time) > time.Hour {
				t.Fatalf("a.txt time %v, want about now", a.Time)
			}
			names, err := c.NameList("/docs")
			if err != nil || len(names) != 2 {
				t.Fatalf("NLST = %v, %v", names, err)
			}
		})
	}
	c := e.dial(true, testUser)
	// A missing directory lists as empty under LIST (a 450 would be retried forever) but is an
	// error under MLSD, whose failures are 550.
	if entries, err := e.dial(true, testUser, ftp.DialWithDisabledMLSD(true)).List("/missing"); err != nil || len(entries) != 0 {
		t.Fatalf("LIST /missing = %v, %v; want empty", entries, err)
	}
	if _, err := c.List("/missing"); replyCode(err) != 550 {
		t.Fatalf("MLSD /missing: %v, want 550", err)
	}
	en, err := c.GetEntry("/docs/a.txt")
	if err != nil || en.Size != 5 || en.Type != ftp.EntryTypeFile {
		t.Fatalf("MLST = %+v, %v", en, err)
	}
	mt, err := c.GetTime("/docs/a.txt")
	if err != nil || time.Since(mt) > time.Hour {
		t.Fatalf("MDTM = %v, %v", mt, err)
	}
}

func TestDirectoryOperations(t *testing.T) {
	e := startEnv(t, Config{})
	c := e.dial(true, testUser)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.MakeDir("/a"))
	must(c.ChangeDir("a"))
	if d, _ := c.CurrentDir(); d != "/a" {
		t.Fatalf("PWD after CWD = %q", d)
	}
	must(c.Stor("f.txt", strings.NewReader("data")))
	if _, err := e.mem.ReadFile("/a/f.txt"); err != nil {
		t.Fatalf("relative STOR did not land in /a: %v", err)
	}
	must(c.Rename("f.txt", "/a/g.txt"))
	if _, err := e.mem.ReadFile("/a/g.txt"); err != nil {
		t.Fatal("rename target missing")
	}
	if code := replyCode(c.RemoveDir("/a")); code != 550 {
		t.Fatalf("RMD of a non-empty directory: code %d, want 550", code)
	}
	must(c.ChangeDirToParent())
	if d, _ := c.CurrentDir(); d != "/" {
		t.Fatalf("PWD after CDUP = %q", d)
	}
	must(c.Delete("/a/g.txt"))
	must(c.RemoveDir("/a"))
	if _, err := c.FileSize("/a/g.txt"); replyCode(err) != 550 {
		t.Fatalf("SIZE of a deleted file: %v, want 550", err)
	}
	if code := replyCode(c.ChangeDir("/nope")); code != 550 {
		t.Fatalf("CWD to a missing directory: code %d, want 550", code)
	}
	if code := replyCode(c.MakeDir("/")); code != 550 {
		t.Fatalf("MKD /: code %d, want 550", code)
	}
}

// "File not found" must be a 5xx: lftp treats 4xx as temporary and retries forever.
func TestNotFoundIs550(t *testing.T) {
	e := startEnv(t, Config{})
	r := dialRaw(t, e.addr)
	r.authTLS()
	r.login(testUser, testPass)
	for _, cmd := range []string{"SIZE /missing", "MDTM /missing", "DELE /missing", "RNFR /missing", "CWD /missing", "RMD /missing", "MLST /missing", "HASH /missing"} {
		if code, msg := r.cmd("%s", cmd); code != 550 {
			t.Errorf("%s: %d %s, want 550", cmd, code, msg)
		}
	}
	_, data := r.openData(true)
	defer data.Close()
	if code, msg := r.cmd("RETR /missing"); code != 550 {
		t.Errorf("RETR /missing: %d %s, want 550", code, msg)
	}
}

func TestRestRetr(t *testing.T) {
	e := startEnv(t, Config{})
	data := randomData(t, 3<<20+17)
	if err := e.mem.WriteFile("/big.bin", data); err != nil {
		t.Fatal(err)
	}
	c := e.dial(true, testUser)
	for _, off := range []int{0, 1, 1 << 20, len(data) - 1, len(data)} {
		r, err := c.RetrFrom("/big.bin", uint64(off))
		if err != nil {
			t.Fatalf("REST %d + RETR: %v", off, err)
		}
		if got := readAll(t, r); !bytes.Equal(got, data[off:]) {
			t.Fatalf("REST %d: got %d bytes, want the last %d", off, len(got), len(data)-off)
		}
	}
}

func TestAppendAndResumedUploadRefused(t *testing.T) {
	e := startEnv(t, Config{})
	c := e.dial(true, testUser)
	if err := c.Stor("/log.txt", strings.NewReader("first")); err != nil {
		t.Fatal(err)
	}
	err := c.Append("/log.txt", strings.NewReader("second"))
	if code := replyCode(err); code != 550 {
		t.Fatalf("APPE to an existing file: %v, want 550", err)
	}
	err = c.StorFrom("/log.txt", strings.NewReader("tail"), 3)
	if code := replyCode(err); code != 550 {
		t.Fatalf("REST 3 + STOR: %v, want 550", err)
	}
	if got, _ := e.mem.ReadFile("/log.txt"); string(got) != "first" {
		t.Fatalf("refused writes changed the file: %q", got)
	}
	// The connection is still usable, and APPE to a new file is an upload.
	if err := c.Append("/new.txt", strings.NewReader("fresh")); err != nil {
		t.Fatalf("APPE to a new file: %v", err)
	}
	if got, _ := e.mem.ReadFile("/new.txt"); string(got) != "fresh" {
		t.Fatalf("APPE to a new file stored %q", got)
	}
	if e.mem.Pending() != 0 {
		t.Fatalf("%d uploads left pending", e.mem.Pending())
	}
}

func TestHash(t *testing.T) {
	e := startEnv(t, Config{})
	data := randomData(t, 100_000)
	if err := e.mem.WriteFile("/dir/h.bin", data); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, e.addr)
	r.authTLS()
	r.login(testUser, testPass)
	msg := r.expect(211, "FEAT")
	if !strings.Contains(msg, "SHA-256") {
		t.Fatalf("FEAT does not announce SHA-256: %q", msg)
	}
	msg = r.expect(213, "HASH /dir/h.bin")
	if !strings.Contains(msg, "SHA-256 0-100000 "+sha(data)) {
		t.Fatalf("HASH reply %q, want the SHA-256 %s", msg, sha(data))
	}
	r.expect(250, "CWD /dir")
	msg = r.expect(213, "HASH h.bin") // relative to the working directory
	if !strings.Contains(msg, sha(data)) {
		t.Fatalf("relative HASH reply %q", msg)
	}
	r.expect(200, "OPTS HASH MD5")
	if msg := r.expect(213, "HASH h.bin"); !strings.Contains(msg, "MD5 0-100000") {
		t.Fatalf("MD5 HASH reply %q", msg)
	}
	msg = r.expect(250, "XSHA256 h.bin 10 20")
	if !strings.Contains(msg, sha(data[10:20])) {
		t.Fatalf("ranged XSHA256 reply %q, want %s", msg, sha(data[10:20]))
	}
}

// MFMT and SITE CHMOD are stored; they fail only for a missing file or a user whose
// permissions refuse them (clients fail whole jobs on other failures, which are logged).
func TestMFMTAndChmod(t *testing.T) {
	e := startEnv(t, Config{})
	if err := e.mem.WriteFile("/m.txt", []byte("x")); err != nil {
		t.Fatal(err)
	}
	c := e.dial(true, testUser)
	want := time.Date(2020, 5, 17, 10, 11, 12, 0, time.UTC)
	if err := c.SetTime("/m.txt", want); err != nil {
		t.Fatalf("MFMT: %v", err)
	}
	if got, err := c.GetTime("/m.txt"); err != nil || !got.Equal(want) {
		t.Fatalf("MDTM after MFMT = %v, %v; want %v", got, err, want)
	}
	r := dialRaw(t, e.addr)
	r.authTLS()
	r.login(testUser, testPass)
	r.expect(200, "SITE CHMOD 600 /m.txt")
	if code, _ := r.cmd("SITE CHMOD 600 /missing"); code != 550 {
		t.Fatalf("SITE CHMOD on a missing file: %d, want 550", code)
	}
	// A read-only user may not change a file's time or mode: 550, and nothing changes.
	ro := dialRaw(t, e.addr)
	ro.authTLS()
	ro.login(roUser, testPass)
	ro.expect(550, "SITE CHMOD 644 /m.txt")
	ro.expect(550, "MFMT 20010101000000 /m.txt")
	if got, _ := c.GetTime("/m.txt"); !got.Equal(want) {
		t.Fatalf("read-only MFMT changed the time to %v", got)
	}
}

func TestPermissions(t *testing.T) {
	e := startEnv(t, Config{})
	if err := e.mem.WriteFile("/ro.txt", []byte("keep")); err != nil {
		t.Fatal(err)
	}
	c := e.dial(true, roUser)
	checks := map[string]error{
		"STOR": c.Stor("/new.txt", strings.NewReader("x")),
		"DELE": c.Delete("/ro.txt"),
		"MKD":  c.MakeDir("/d"),
		"RNTO": c.Rename("/ro.txt", "/moved.txt"),
		"RETR ok": func() error {
			r, err := c.Retr("/ro.txt")
			if err == nil {
				readAll(t, r)
			}
			return err
		}(),
	}
	for op, err := range checks {
		if op == "RETR ok" {
			if err != nil {
				t.Errorf("read-only user cannot download: %v", err)
			}
			continue
		}
		if code := replyCode(err); code != 550 {
			t.Errorf("%s as read-only user: %v, want 550", op, err)
		}
	}
	if got, _ := e.mem.ReadFile("/ro.txt"); string(got) != "keep" {
		t.Fatal("read-only user changed a file")
	}
	e.assertNothingStored("/new.txt")
}

func TestPassivePortRange(t *testing.T) {
	pr := freeRange(t, 3)
	e := startEnv(t, Config{PassivePorts: pr})
	r := dialRaw(t, e.addr)
	r.authTLS()
	r.login(testUser, testPass)
	for i := 0; i < 6; i++ {
		msg := r.expect(229, "EPSV")
		m := epsvRe.FindStringSubmatch(msg)
		port, _ := strconv.Atoi(m[1])
		if port < pr.Start || port > pr.End {
			t.Fatalf("EPSV port %d outside %d-%d", port, pr.Start, pr.End)
		}
		msg = r.expect(227, "PASV")
		f := strings.Split(strings.Trim(msg[strings.Index(msg, "("):], "()."), ",")
		hi, _ := strconv.Atoi(f[4])
		lo, _ := strconv.Atoi(f[5])
		if p := hi*256 + lo; p < pr.Start || p > pr.End || strings.Join(f[:4], ".") != "127.0.0.1" {
			t.Fatalf("PASV reply %q: port %d outside %d-%d or wrong host", msg, p, pr.Start, pr.End)
		}
	}
	// And transfers work through the range.
	c := e.dial(true, testUser)
	if err := c.Stor("/p.txt", strings.NewReader("ranged")); err != nil {
		t.Fatal(err)
	}
}

func TestPublicHostInPASV(t *testing.T) {
	e := startEnv(t, Config{PublicHost: "203.0.113.7"})
	r := dialRaw(t, e.addr)
	r.authTLS()
	r.login(testUser, testPass)
	if msg := r.expect(227, "PASV"); !strings.Contains(msg, "(203,0,113,7,") {
		t.Fatalf("PASV reply %q does not carry the public host", msg)
	}
}

func TestActiveModeDisabledByDefault(t *testing.T) {
	e := startEnv(t, Config{})
	r := dialRaw(t, e.addr)
	r.authTLS()
	r.login(testUser, testPass)
	if code, _ := r.cmd("PORT 127,0,0,1,200,10"); code/100 == 2 {
		t.Fatalf("PORT accepted with active mode disabled: %d", code)
	}
}

// TLS session resumption on the data channel is accepted (FileZilla, curl ask for it) but not
// required (a client without a session cache still transfers).
func TestDataChannelTLSResumption(t *testing.T) {
	e := startEnv(t, Config{})
	for _, resume := range []bool{true, false} {
		cfg := clientTLS()
		// Go's client cache is keyed by ServerName, or else by host:port, which differs for
		// every data connection.
		cfg.ServerName = "localhost"
		if !resume {
			cfg.ClientSessionCache = nil
		}
		// The server handshakes only once the command arrives, so the handshake is left to the
		// first write and the state read after the transfer.
		var conns []*tls.Conn
		dialer := func(network, addr string) (net.Conn, error) {
			raw, err := net.DialTimeout(network, addr, 5*time.Second)
			if err != nil || addr == e.addr {
				return raw, err
			}
			tc := tls.Client(raw, cfg)
			conns = append(conns, tc)
			return tc, nil
		}
		c, err := ftp.Dial(e.addr, ftp.DialWithTimeout(10*time.Second), ftp.DialWithExplicitTLS(cfg), ftp.DialWithDialFunc(dialer))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(testUser, testPass); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if err := c.Stor("/r.txt", strings.NewReader("resume")); err != nil {
				t.Fatalf("resume=%v: STOR %d: %v", resume, i, err)
			}
		}
		c.Quit()
		var states []tls.ConnectionState
		for _, tc := range conns {
			states = append(states, tc.ConnectionState())
		}
		if len(states) != 3 {
			t.Fatalf("%d data connections, want 3", len(states))
		}
		if resume && !states[len(states)-1].DidResume {
			t.Fatalf("data connection did not resume the TLS session")
		}
		if !resume && states[0].DidResume {
			t.Fatalf("resumed without a session cache?")
		}
		if states[0].Version < tls.VersionTLS12 {
			t.Fatalf("TLS version %x", states[0].Version)
		}
	}
}

func TestImplicitTLS(t *testing.T) {
	e := startEnv(t, Config{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.ServeImplicitTLS(l)
	c, err := ftp.Dial(l.Addr().String(), ftp.DialWithTimeout(10*time.Second), ftp.DialWithTLS(clientTLS()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.Login(testUser, testPass); err != nil {
		t.Fatal(err)
	}
	data := randomData(t, 1<<20)
	if err := c.Stor("/implicit.bin", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.mem.ReadFile("/implicit.bin"); sha(got) != sha(data) {
		t.Fatal("implicit FTPS upload differs")
	}
	if opts, _ := e.mem.CreateOptions("/implicit.bin"); opts.Protocol != "ftps" {
		t.Fatalf("protocol %q, want ftps", opts.Protocol)
	}
}

func TestMaxClients(t *testing.T) {
	e := startEnv(t, Config{MaxClients: 1})
	e.dial(true, testUser)
	raw, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	code, _, err := textproto.NewConn(raw).ReadResponse(0)
	if code != 421 {
		t.Fatalf("second client: %d %v, want 421", code, err)
	}
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no cert":          {},
		"bad mode":         {TLS: TLSConfig{Mode: "sometimes", DevSelfSigned: true}},
		"bad ports":        {TLS: TLSConfig{DevSelfSigned: true}, PassivePorts: PortRange{Start: 3000, End: 2000}},
		"ipv6 public host": {TLS: TLSConfig{DevSelfSigned: true}, PublicHost: "2001:db8::1"},
		"implicit no tls":  {TLS: TLSConfig{Mode: TLSNone, ImplicitListenAddr: ":990"}},
	} {
		if _, err := New(cfg, Deps{Auth: testAuth{}, Storage: nil}); err == nil {
			t.Errorf("%s: accepted", name)
		}
		deps := Deps{Auth: testAuth{}, Storage: startEnvStorage}
		if _, err := New(cfg, deps); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
