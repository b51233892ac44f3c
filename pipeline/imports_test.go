package pipeline

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/ferrygw/ferry"

// TestNothingImportsTheGateway fails if a package under pipeline/, or one of its tests, depends on
// anything under gateway/, directly or through another package.
func TestNothingImportsTheGateway(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"/pipeline/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], module+"/") {
			continue
		}
		checked++
		for _, imp := range fields[1:] {
			if strings.HasPrefix(imp, module+"/gateway/") || imp == module+"/gateway" {
				t.Errorf("%s imports %s: the pipeline must not depend on the gateway", fields[0], imp)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d of the module's packages listed: the check would prove nothing\n%s", checked, out)
	}
}
