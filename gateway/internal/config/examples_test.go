package config_test

import (
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

const configsDir = "../../../configs"

// Every file in configs/ loads and validates: a config as a config (with its users file when
// that is in configs/ too), a users*.yaml as a users file, without warnings.
func TestExampleConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(configsDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("found %d files in %s, want at least the 4 examples", len(files), configsDir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if strings.HasPrefix(filepath.Base(f), "users") {
				list, warnings, err := users.Load(f)
				if err != nil {
					t.Fatal(err)
				}
				if len(warnings) > 0 || len(list) == 0 {
					t.Errorf("%d users, warnings %q", len(list), warnings)
				}
				return
			}
			if filepath.Base(f) == "pipeline.yaml" {
				// Routes, not a gateway config: the embedded default loads it through
				// pipeline/route, whose tests load and run this file; here its reference.
				dev, err := config.Load(filepath.Join(configsDir, "dev.yaml"))
				if err != nil || dev.Embedded.Pipeline.Routes != f {
					t.Errorf("dev.yaml's embedded.pipeline.routes = %q (%v), want %s", dev.Embedded.Pipeline.Routes, err, f)
				}
				return
			}
			c, err := config.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if filepath.IsAbs(c.UsersFile) {
				return // a production path such as /etc/ferry/users.yaml
			}
			if _, _, err := users.Load(c.UsersFile); err != nil {
				t.Errorf("its users file: %v", err)
			}
		})
	}
}

func TestDevConfig(t *testing.T) {
	c, err := config.Load(filepath.Join(configsDir, "dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Fixed points that the README and scripts rely on.
	s, e := c.Storage.S3, c.Embedded.S3
	if c.Listen.SFTP != "127.0.0.1:2222" || c.Listen.FTP != "127.0.0.1:2121" || c.Listen.Metrics != "127.0.0.1:9100" ||
		s.Bucket != "ferry" || s.Endpoint != "" {
		t.Errorf("dev config: listen %+v, s3 %+v", c.Listen, s)
	}
	if e.Listen != "127.0.0.1:9000" || e.AccessKey != "ferry" || e.Secret != "ferrysecret" ||
		e.DataDir != filepath.Join(configsDir, "..", "data", "s3") {
		t.Errorf("dev embedded s3: %+v", e)
	}
	if c.UsersFile != filepath.Join(configsDir, "users.dev.yaml") {
		t.Errorf("users_file = %q", c.UsersFile)
	}
	for _, p := range c.HostKeys.Paths {
		if !strings.HasPrefix(p, filepath.Join(configsDir, "..", "data")+"/") {
			t.Errorf("dev host key %q is not under the git-ignored data/ folder", p)
		}
	}
	list, _, err := users.Load(c.UsersFile)
	if err != nil {
		t.Fatal(err)
	}
	demo := list[0]
	if demo.Name != "demo" || demo.Home != "incoming/demo/" || demo.Permissions.ReadOnly() || len(demo.Permissions.Names()) != 7 {
		t.Errorf("demo = %+v", demo)
	}
	if bcrypt.CompareHashAndPassword([]byte(demo.PasswordHash), []byte("demo")) != nil {
		t.Error("demo's password is not demo")
	}
}

func TestUsersExample(t *testing.T) {
	list, _, err := users.Load(filepath.Join(configsDir, "users.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var readOnly, keyOnly bool
	for _, u := range list {
		readOnly = readOnly || u.Permissions.ReadOnly() && u.Permissions.List
		keyOnly = keyOnly || u.PasswordHash == "" && len(u.PublicKeys) > 0
	}
	if !readOnly || !keyOnly {
		t.Errorf("the example should show a read-only user (%v) and a key-only user (%v)", readOnly, keyOnly)
	}
}
