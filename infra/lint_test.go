package infra_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// TestCfnLint runs AWS's CloudFormation linter over every template with the repository's
// configuration (.cfnlintrc.yaml): no error and no warning may remain.
func TestCfnLint(t *testing.T) {
	lint := testtool.Path(t, "cfn-lint")
	root := repoRoot(t)
	ver, err := exec.Command(lint, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("cfn-lint --version: %v\n%s", err, ver)
	}
	t.Logf("%s", bytes.TrimSpace(ver))

	cfg := readLintConfig(t, filepath.Join(root, ".cfnlintrc.yaml"))
	// `make validate-infra` runs plain `cfn-lint`, which lints what the config lists: every
	// template of infra/.
	for _, name := range templateNames {
		covered := false
		for _, glob := range cfg.templates {
			if ok, _ := filepath.Match(glob, "infra/"+name); ok {
				covered = true
			}
		}
		if !covered {
			t.Errorf("infra/%s is not among the templates .cfnlintrc.yaml lints (%v)", name, cfg.templates)
		}
	}
	for rule, reason := range cfg.ignored {
		if reason == "" {
			t.Errorf(".cfnlintrc.yaml ignores %s without a comment saying why", rule)
		}
	}

	args := []string{"--format", "parseable"}
	for _, name := range templateNames {
		args = append(args, filepath.Join("infra", name))
	}
	cmd := exec.Command(lint, args...)
	cmd.Dir = root // where .cfnlintrc.yaml is read
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("cfn-lint found problems (%v):\n%s", err, out)
	}
	t.Logf("cfn-lint: %d templates, 0 errors, 0 warnings (ignored: %v)", len(templateNames), sortedKeys(cfg.ignored))
}

type lintConfig struct {
	templates []string
	ignored   map[string]string // rule -> the comment above it
}

// readLintConfig reads the two lists of .cfnlintrc.yaml and the comment lines above each
// ignored rule.
func readLintConfig(t *testing.T, path string) lintConfig {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := lintConfig{ignored: map[string]string{}}
	section, comment := "", ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#"):
			comment += strings.TrimSpace(strings.TrimPrefix(line, "#")) + " "
		case strings.HasSuffix(line, ":") && !strings.HasPrefix(line, "-"):
			section, comment = strings.TrimSuffix(line, ":"), ""
		case strings.HasPrefix(line, "- "):
			item := strings.TrimSpace(strings.TrimPrefix(line, "- "))
			switch section {
			case "templates":
				cfg.templates = append(cfg.templates, item)
			case "ignore_checks":
				cfg.ignored[item] = strings.TrimSpace(comment)
			}
			comment = ""
		case line == "":
		default:
			t.Fatalf("%s: unexpected line %q", path, line)
		}
	}
	if len(cfg.templates) == 0 {
		t.Fatalf("%s lists no templates", path)
	}
	return cfg
}
