package s3server

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// TestAWSCLI drives the real `aws` command (botocore's SigV4, its multipart uploads and its
// checksums) against the endpoint, as the README tells users to.
func TestAWSCLI(t *testing.T) {
	bin := testtool.Path(t, "aws")
	h := newHarness(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.WriteFile(cfg, []byte("[default]\nregion = us-east-1\n"), 0o600)
	aws := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), bin, append([]string{"--endpoint-url", h.url}, args...)...)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "AWS_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "AWS_ACCESS_KEY_ID="+testKey, "AWS_SECRET_ACCESS_KEY="+testSecret,
			"AWS_CONFIG_FILE="+cfg, "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "none"), "AWS_PAGER=")
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("aws %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), stderr.String())
		}
		return out.String()
	}

	small := filepath.Join(dir, "small.txt")
	os.WriteFile(small, []byte("hello from the aws cli\n"), 0o644)
	big := filepath.Join(dir, "big.bin")
	data := make([]byte, 20<<20+123) // past the CLI's 8 MiB multipart threshold
	rand.Read(data)
	os.WriteFile(big, data, 0o644)

	aws("s3", "cp", small, "s3://ferry/incoming/demo/small file.txt")
	aws("s3", "cp", big, "s3://ferry/incoming/demo/big.bin")
	ls := aws("s3", "ls", "--recursive", "s3://ferry/incoming/")
	if !strings.Contains(ls, "incoming/demo/small file.txt") || !strings.Contains(ls, "incoming/demo/big.bin") {
		t.Errorf("aws s3 ls:\n%s", ls)
	}
	back := filepath.Join(dir, "back.bin")
	aws("s3", "cp", "s3://ferry/incoming/demo/big.bin", back)
	if got, _ := os.ReadFile(back); !bytes.Equal(got, data) {
		t.Errorf("downloaded %d bytes differ from the %d uploaded", len(got), len(data))
	}
	if got := h.get("incoming/demo/small file.txt"); got != "hello from the aws cli\n" {
		t.Errorf("small file: %q", got)
	}
	aws("s3", "rm", "s3://ferry/incoming/demo/small file.txt")
	if out := aws("s3api", "list-multipart-uploads", "--bucket", "ferry"); strings.Contains(out, "UploadId") {
		t.Errorf("uploads left:\n%s", out)
	}

	var got []string
	for _, c := range h.takeChanges() {
		got = append(got, c.Reason+" "+c.Key)
	}
	want := []string{"PutObject incoming/demo/small file.txt", "CompleteMultipartUpload incoming/demo/big.bin", "DeleteObject incoming/demo/small file.txt"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("changes %q, want %q", got, want)
	}
	h.tmpEmpty()
}
