package config

import (
	"fmt"

	"github.com/ferrygw/ferry/pipeline/strictyaml"
)

// Warnings lists valid settings that expose the gateway more than they probably should, each
// with the file and line of its key (`ferry check` prints them; they never stop a start). Call
// it on a validated configuration.
func (c *Config) Warnings() []error {
	var out []error
	warn := func(path, format string, args ...any) {
		out = append(out, &strictyaml.Problem{File: c.file, Line: c.pos.Line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if e := c.Embedded.S3.Listen; e != "" && !IsLoopback(e) {
		warn("embedded.s3.listen", "the embedded S3 endpoint listens on %s, reachable from other hosts: anyone holding its one access key may read and write every bucket (use 127.0.0.1)", e)
	}
	ftpOn := c.Listen.FTP != "" || c.Listen.FTPSImplicit != ""
	mode := c.FTP.TLS.Mode
	if ftpOn && mode == "none" {
		warn("ftp.tls.mode", "FTP without TLS: passwords and files cross the network in clear")
	}
	if f := c.Listen.FTP; f != "" && mode != "required" && !IsLoopback(f) {
		warn("listen.ftp", "plaintext FTP (ftp.tls.mode %s) on %s, reachable from other hosts: clients may send passwords in clear (use ftp.tls.mode required)", mode, f)
	}
	if p := c.Listen.PProf; p != "" {
		warn("listen.pprof", "profiling is enabled on %s: turn it off once the diagnosis is done", p)
	}
	return out
}
