package infra_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/ferryproc"
)

// The production config the image carries (Dockerfile: /etc/ferry/ferry.yaml).
const awsConfig = "configs/ferry.aws.yaml"

// TestAWSConfigChecks runs `ferry check` on configs/ferry.aws.yaml with exactly the environment
// the task definition sets (gateway.yaml, evaluated with the root's defaults) and placeholder
// secrets: what a task starts with must load. The users file it names is served by moto, in
// case check reads it.
func TestAWSConfigChecks(t *testing.T) {
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, awsConfig)); errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s is missing. It is the gateway's production config for AWS, written on branch "+
			"gw-replicas (issue 9 contract) with the features it uses (users_file s3://, listen.health, "+
			"listen.proxy_protocol, ftp.tls.cert_pem/key_pem); this test passes once both branches are merged", awsConfig)
	}
	bin := ferryproc.Build(t)
	tp := loadTemplate(t, "gateway.yaml")
	c := newEvalCtx(t, tp, childParams(t, "Gateway", nil))
	td := c.evalResource(t, tp, "TaskDefinition")
	cd := td["ContainerDefinitions"].([]any)[0]
	env, secrets := taskEnvironment(t, cd)
	want(t, "command", at(cd, "Command"), []any{"serve", "--config", "/etc/ferry/ferry.yaml"})

	placeholders := map[string]string{
		"FERRY_HOST_KEYS": hostKeyPEM(t),
	}
	placeholders["FERRY_FTPS_CERT"], placeholders["FERRY_FTPS_KEY"] = selfSignedPEM(t)
	for name := range secrets {
		if _, ok := placeholders[name]; !ok {
			t.Fatalf("the task definition injects secret %s, which this test has no placeholder for", name)
		}
	}

	// The users file lives in the deployed stack's bucket, as it does on AWS (make deploy writes it).
	m := deploy(t).moto
	usersFile := env["FERRY_USERS_FILE"]
	bucket, key, ok := strings.Cut(strings.TrimPrefix(usersFile, "s3://"), "/")
	if !ok || !strings.HasPrefix(usersFile, "s3://") {
		t.Fatalf("FERRY_USERS_FILE = %q, want s3://bucket/key", usersFile)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s3c := m.s3()
	if _, err := s3c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("the users file's bucket %s is not the deployed bucket: %v", bucket, err)
	}
	users, err := os.ReadFile(filepath.Join(root, "configs", "users.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(string(users))}); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(ctx, bin, "check", "--config", filepath.Join(root, awsConfig))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_ENDPOINT_URL=" + m.URL}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range placeholders {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ferry check %s with the task definition's environment: %v\n%s", awsConfig, err, out)
	}
	t.Logf("ferry check %s: ok with %d variables and %d secrets from the task definition\n%s", awsConfig, len(env), len(secrets), out)
}

func hostKeyPEM(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "placeholder host key")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

func selfSignedPEM(t *testing.T) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ftp.example.com"},
		DNSNames: []string{"ftp.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
}
