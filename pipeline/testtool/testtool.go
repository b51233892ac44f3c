// Package testtool finds the external programs Ferry's tests drive (versitygw, OpenSSH, lftp,
// curl, the AWS CLI, HAProxy, cfn-lint, moto_server, rclone) so that a missing one is a failure
// that says how to install it, never a silent skip: a green run must have run every test.
//
// A program is looked up in the project's tools folder (<module root>/.tools/bin, where `make
// tools` installs the Go programs at pinned versions), then in PATH. Only a deliberate short run
// (`go test -short`) skips the tests that need a missing program.
//
// It lives under pipeline/ because both sides' tests use it and the gateway may import the
// pipeline, never the reverse.
package testtool

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// install says how each known program gets onto a machine.
var install = map[string]string{
	"versitygw":   "make tools (go install into .tools/bin)",
	"rclone":      "make tools (go install into .tools/bin)",
	"sftp":        "apt-get install -y openssh-client",
	"ssh":         "apt-get install -y openssh-client",
	"ssh-keygen":  "apt-get install -y openssh-client",
	"lftp":        "apt-get install -y lftp",
	"curl":        "apt-get install -y curl",
	"openssl":     "apt-get install -y openssl",
	"aws":         "apt-get install -y awscli",
	"haproxy":     "apt-get install -y haproxy",
	"ip":          "apt-get install -y iproute2",
	"tc":          "apt-get install -y iproute2",
	"cfn-lint":    "provided by the machine image (AWS's cfn-lint 1.51; PyPI is not reachable to install it)",
	"moto_server": "provided by the machine image (moto 5.2; PyPI is not reachable to install it)",
}

// Path returns the path of the program name. If it is missing the test fails with the command
// that installs it, or, in a -short run only, is skipped.
func Path(t testing.TB, name string) string {
	t.Helper()
	p, err := Find(name)
	if err == nil {
		return p
	}
	if testing.Short() {
		t.Skipf("-short: %v", err)
	}
	t.Fatal(err)
	return ""
}

// Find returns the path of the program name or an error that says how to install it.
func Find(name string) (string, error) {
	if dir := BinDir(); dir != "" {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	how := install[name]
	if how == "" {
		how = "install it"
	}
	return "", fmt.Errorf("%s is required by this test and was not found in %s or PATH: %s",
		name, displayDir(BinDir()), how)
}

// BinDir is the project's tools folder, <module root>/.tools/bin ("" outside the module).
func BinDir() string {
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			return
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				binDir = filepath.Join(dir, ".tools", "bin")
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				return
			}
			dir = parent
		}
	})
	return binDir
}

// The module root cannot change while a test binary runs, so it is found once.
var (
	rootOnce sync.Once
	binDir   string
)

func displayDir(d string) string {
	if d == "" {
		return ".tools/bin"
	}
	return d
}
