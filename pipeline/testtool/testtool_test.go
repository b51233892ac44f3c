package testtool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindPrefersToolsFolder(t *testing.T) {
	dir := BinDir()
	if dir == "" {
		t.Fatal("BinDir: module root not found from the package directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := "ferry-testtool-probe"
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(p) })
	got, err := Find(name)
	if err != nil || got != p {
		t.Fatalf("Find(%q) = %q, %v; want %q", name, got, err, p)
	}
}

func TestFindMissingSaysHowToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for name, want := range map[string]string{
		"haproxy":          "apt-get install -y haproxy",
		"sftp":             "apt-get install -y openssh-client",
		"cfn-lint":         "provided by the machine image",
		"no-such-program-": "install it",
	} {
		if _, err := os.Stat(filepath.Join(BinDir(), name)); err == nil {
			continue // installed into the tools folder: not missing
		}
		_, err := Find(name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Find(%q) error = %v, want it to contain %q", name, err, want)
		}
	}
}
