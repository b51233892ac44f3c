package infra_test

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// dockerfile is the Dockerfile's instructions, continuation lines joined.
type dockerfile struct{ lines []string }

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var d dockerfile
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasSuffix(l, `\`) {
			cur += strings.TrimSuffix(l, `\`) + " "
			continue
		}
		d.lines = append(d.lines, cur+l)
		cur = ""
	}
	return d
}

func (d dockerfile) with(prefix string) []string {
	var out []string
	for _, l := range d.lines {
		if strings.HasPrefix(l, prefix+" ") {
			out = append(out, strings.TrimPrefix(l, prefix+" "))
		}
	}
	return out
}

// Docker does not run on our machines: this test takes the Dockerfile's build command, runs it
// with the platform the build would give it, and checks the binary is static and works; and it
// checks the image's shape against what the task definition expects.
func TestDockerfile(t *testing.T) {
	d := readDockerfile(t)
	root := repoRoot(t)
	if froms := d.with("FROM"); len(froms) < 2 || !strings.Contains(froms[len(froms)-1], "distroless/static") {
		t.Errorf("want a multi-stage build ending on distroless static, got FROM %v", froms)
	}
	if users := d.with("USER"); len(users) == 0 || strings.HasPrefix(users[len(users)-1], "root") || strings.HasPrefix(users[len(users)-1], "0") {
		t.Errorf("the image must run as a non-root user, got USER %v", users)
	}

	// The task definition runs CMD's config, and the image puts ferry.aws.yaml there.
	tp := loadTemplate(t, "gateway.yaml")
	c := newEvalCtx(t, tp, childParams(t, "Gateway", nil))
	cd := c.evalResource(t, tp, "TaskDefinition")["ContainerDefinitions"].([]any)[0]
	want(t, "CMD", d.with("CMD"), []string{`["serve", "--config", "/etc/ferry/ferry.yaml"]`})
	want(t, "task definition command", at(cd, "Command"), []any{"serve", "--config", "/etc/ferry/ferry.yaml"})
	copied := false
	for _, cp := range d.with("COPY") {
		if cp == awsConfig+" /etc/ferry/ferry.yaml" {
			copied = true
		}
	}
	if !copied {
		t.Errorf("the image does not copy %s to /etc/ferry/ferry.yaml", awsConfig)
	}
	var ports []string
	for _, p := range at(cd, "PortMappings").([]any) {
		ports = append(ports, scalarString(at(p, "ContainerPort")))
	}
	want(t, "EXPOSE (the task definition's container ports)", strings.Fields(strings.Join(d.with("EXPOSE"), " ")), ports)
	if _, err := os.Stat(filepath.Join(root, awsConfig)); errors.Is(err, os.ErrNotExist) {
		t.Errorf("COPY %s: the file is missing (written on branch gw-replicas; see TestAWSConfigChecks)", awsConfig)
	}

	// The build command, as the build stage runs it.
	var build string
	for _, r := range d.with("RUN") {
		if strings.Contains(r, "go build") {
			build = r
		}
	}
	if build == "" {
		t.Fatal("no go build in the Dockerfile")
	}
	vars := map[string]string{"VERSION": "infra-test", "TARGETOS": "linux", "TARGETARCH": runtime.GOARCH}
	build = regexp.MustCompile(`\$\{?([A-Z]+)\}?`).ReplaceAllStringFunc(build, func(m string) string {
		name := strings.Trim(m, "${}")
		v, ok := vars[name]
		if !ok {
			t.Fatalf("the build command uses $%s, which this test does not know", name)
		}
		return v
	})
	out := filepath.Join(t.TempDir(), "ferry")
	build = strings.Replace(build, "-o /out/ferry", "-o "+out, 1)
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "-o "+out) {
		t.Fatalf("unexpected build command: %s", build)
	}
	cmd := exec.Command("sh", "-c", build)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary needs a dynamic loader: it would not run on distroless static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links %v", libs)
	}
	v, err := exec.Command(out, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(v), "infra-test") {
		t.Errorf("ferry version: %v: %s", err, v)
	}
	t.Logf("%s -> static %s/%s binary, `ferry version`: %s", build, "linux", runtime.GOARCH, bytes.TrimSpace(v))
}
