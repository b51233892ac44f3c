package ftpd

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// TestEPSVAll drives the control connection by hand, in clear and over explicit FTPS, with
// active mode enabled so PORT and EPRT would otherwise be accepted: after EPSV ALL, PASV, PORT
// and EPRT are refused with 501 and EPSV keeps working; before it, and on other connections,
// nothing changes.
func TestEPSVAll(t *testing.T) {
	e := startEnv(t, Config{ActiveEnabled: true, TLS: TLSConfig{Mode: TLSOptional}})
	if err := e.mem.WriteFile("/listed.txt", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, tlsOn := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "ftps"}[tlsOn], func(t *testing.T) {
			c := dialRaw(t, e.addr)
			if tlsOn {
				c.authTLS()
			}
			c.login(testUser, testPass)
			// Before: everything is allowed.
			c.expect(227, "PASV")
			c.expect(200, "PORT 127,0,0,1,4,1")
			c.expect(200, "EPRT |1|127.0.0.1|1025|")
			other := dialRaw(t, e.addr)
			other.login(testUser, testPass)

			c.expect(200, "EPSV ALL")
			for _, cmd := range []string{"PASV", "PORT 127,0,0,1,4,1", "EPRT |1|127.0.0.1|1025|", "EPRT |2|::1|1025|", "pasv"} {
				verb := strings.ToUpper(strings.Fields(cmd)[0])
				if msg := c.expect(501, "%s", cmd); !strings.Contains(msg, verb+" not allowed after EPSV ALL") {
					t.Errorf("%s refused with %q", cmd, msg)
				}
			}
			c.expect(200, "epsv all") // again, any case
			// EPSV still sets up data connections: a listing goes through.
			raw, data := c.openData(tlsOn)
			c.send("NLST /")
			if code, msg := c.read(); code != 150 && code != 125 {
				t.Fatalf("NLST after EPSV ALL: %d %s", code, msg)
			}
			if tc, ok := data.(interface{ Handshake() error }); ok {
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
			}
			var listing bytes.Buffer
			data.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := listing.ReadFrom(data); err != nil {
				t.Fatal(err)
			}
			raw.Close()
			if code, msg := c.read(); code != 226 || !strings.Contains(listing.String(), "listed.txt") {
				t.Fatalf("NLST after EPSV ALL: %d %s, listing %q", code, msg, listing.String())
			}
			// SITE is still the client's: unknown subcommands are unknown, as before.
			if code, _ := c.cmd("SITE ferry-guess epsv-all"); code != 500 {
				t.Errorf("a client's SITE with a guessed prefix got %d, want 500", code)
			}
			// Another connection is not affected.
			other.expect(227, "PASV")
			other.expect(200, "EPRT |1|127.0.0.1|1025|")
		})
	}
}

// TestEPSVAllCurl: curl sends EPSV ALL as a quote command before its transfer. Extended passive
// then lists the directory; told to use PASV, curl gets 501 and fails instead of opening a
// connection the client's firewall was promised would not come.
func TestEPSVAllCurl(t *testing.T) {
	curl := testtool.Path(t, "curl")
	e := startEnv(t, Config{TLS: TLSConfig{Mode: TLSOptional}})
	if err := e.mem.WriteFile("/report.csv", []byte("a,b\n")); err != nil {
		t.Fatal(err)
	}
	for _, m := range []clientMode{{"plain", false, true}, {"ftps", true, true}} {
		t.Run(m.name, func(t *testing.T) {
			out := runTool(t, time.Minute, curl, append(m.curlArgs(e), "-Q", "EPSV ALL", "--list-only", e.url("/"))...)
			if !strings.Contains(out, "report.csv") {
				t.Fatalf("listing after EPSV ALL over EPSV: %q", out)
			}
			m.epsv = false // --disable-epsv: curl sends PASV
			cmd := exec.Command(curl, append(m.curlArgs(e), "-v", "-Q", "EPSV ALL", "--list-only", e.url("/"))...)
			got, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("curl with PASV after EPSV ALL: %v, want a failure\n%s", err, got)
			}
			if !strings.Contains(string(got), "< 200 EPSV ALL command successful.") ||
				!strings.Contains(string(got), "< 501 PASV not allowed after EPSV ALL.") {
				t.Fatalf("curl -v (exit %d) does not show EPSV ALL accepted and PASV refused:\n%s", ee.ExitCode(), got)
			}
		})
	}
}

// A library whose command table lacks what the wrapping needs makes New fail, not the client.
func TestWrapDataSetupRefusesAnUnknownLibrary(t *testing.T) {
	for _, cmds := range []map[string]*ftpserver.CommandDescription{
		{},
		{"SITE": libCommands["SITE"]},
		{"SITE": {}, "EPSV": libCommands["EPSV"]},
	} {
		if err := wrapCommands(cmds, dataSetupCommands, (*session).dataSetup); err == nil {
			t.Errorf("wrapCommands(%v) accepted it", cmds)
		}
	}
}
