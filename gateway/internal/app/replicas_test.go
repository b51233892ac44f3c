package app_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// The clients' source addresses: one client each. HAProxy's `balance source` keeps each on one
// replica, as the NLB's source_ip stickiness does.
var clientIPs = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"}

const (
	partner     = "partner"
	partnerPass = "s3cret-partner"
	partnerHome = "partners/acme/"
	passiveN    = 10 // ports in the passive range
)

// lb is the load balancer in front of the replicas, as the NLB is configured: one address for
// SFTP, and FTP control, implicit FTPS and every passive port forwarded to the replicas' FTP port.
type lb struct {
	sftp, ftp, implicit int // frontend ports on 127.0.0.1
	passive             int // first port of the passive range
	stats               string
}

type replica struct {
	name                       string
	sftp, ftp, health, metrics string
	logs                       *logbuf.Buffer
}

// TestReplicasBehindLoadBalancer runs two gateways over one S3 bucket behind HAProxy configured
// as the NLB is (TCP, PROXY protocol v2, source-IP affinity, one backend for every FTP port,
// health checks on /readyz), both presenting the same host key and reading one users file from
// S3. Real clients (curl, lftp, OpenSSH sftp) from eight source addresses then make 50 passive
// FTP transfers (explicit and implicit FTPS, EPSV and PASV) and 8 SFTP sessions through it,
// every byte checked against S3, and both replicas must have served some.
func TestReplicasBehindLoadBalancer(t *testing.T) {
	haproxy := testtool.Path(t, "haproxy")
	curl := testtool.Path(t, "curl")
	lftp := testtool.Path(t, "lftp")
	sftpBin := testtool.Path(t, "sftp")
	srv := s3test.Start(t)
	dir := t.TempDir()

	// Secrets as the task definition injects them: one host key, one FTPS certificate.
	hostKeyPEM, hostPub := newHostKey(t)
	certPEM, keyPEM := newCert(t)
	t.Setenv("FERRY_TEST_HOST_KEYS", hostKeyPEM)
	t.Setenv("FERRY_TEST_FTPS_CERT", certPEM)
	t.Setenv("FERRY_TEST_FTPS_KEY", keyPEM)
	caFile := filepath.Join(dir, "ca.pem")
	writeFile(t, caFile, certPEM)

	// The users file lives in S3, written as `ferry user add` writes it.
	clientKeyFile, clientPub := newClientKey(t, dir)
	hash, err := users.HashPassword(partnerPass)
	if err != nil {
		t.Fatal(err)
	}
	const usersKey = "config/users.yaml"
	if err := users.Add(t.Context(), users.S3Object(srv.Client(), srv.Bucket, usersKey), users.Entry{
		Name: partner, PasswordHash: hash, PublicKeys: []string{clientPub}, Home: partnerHome, Permissions: []string{"*"},
	}); err != nil {
		t.Fatal(err)
	}

	front := lb{sftp: testtool.FreePort(t), ftp: testtool.FreePort(t), implicit: testtool.FreePort(t), passive: testtool.FreePortRange(t, passiveN), stats: testtool.FreeAddr(t)}
	var replicas []*replica
	for _, name := range []string{"r1", "r2"} {
		replicas = append(replicas, startReplica(t, name, srv, usersKey, front))
	}
	startHAProxy(t, haproxy, dir, front, replicas)

	// Nothing reaches a replica but through the load balancer: a direct connection from a
	// client address is refused before any banner.
	direct, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientIPs[0])}, Timeout: 5 * time.Second}).Dial("tcp", replicas[0].sftp)
	if err != nil {
		t.Fatal(err)
	}
	direct.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := direct.Read(make([]byte, 64)); err == nil || n > 0 {
		t.Errorf("a direct SFTP connection from %s got %d bytes (%v), want it closed", clientIPs[0], n, err)
	}
	direct.Close()

	// Objects to download, written straight to S3.
	seeds := map[string][]byte{}
	for i := range 50 {
		if kind(i).download {
			data := randomBytes(t, size(i))
			key := fmt.Sprintf("seed-%02d.bin", i)
			putObject(t, srv, partnerHome+key, data)
			seeds[key] = data
		}
	}

	ftp := ftpClients{curl: curl, lftp: lftp, ca: caFile, front: front, dir: dir}
	var wg sync.WaitGroup
	results := make(chan string, 50)
	start := time.Now()
	for c, ip := range clientIPs {
		wg.Go(func() {
			for i := c; i < 50; i += len(clientIPs) {
				results <- ftp.transfer(t, srv, ip, i, seeds)
			}
		})
	}
	wg.Wait()
	close(results)
	byKind := map[string]int{}
	for r := range results {
		byKind[r]++
	}
	t.Logf("50 FTP transfers from %d addresses in %s: %v", len(clientIPs), time.Since(start).Round(time.Millisecond), byKind)

	// SFTP through the same load balancer: OpenSSH knows the one host key (StrictHostKeyChecking).
	knownHosts := filepath.Join(dir, "known_hosts")
	writeFile(t, knownHosts, fmt.Sprintf("[127.0.0.1]:%d %s\n", front.sftp, hostPub))
	for _, ip := range clientIPs {
		wg.Go(func() { sftpSession(t, sftpBin, dir, ip, front, clientKeyFile, knownHosts, srv) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// Both replicas served: by their own counters, and by who logged in where. Each client
	// address stuck to one replica, for FTP and SFTP alike, and the replicas saw the clients'
	// addresses (from the PROXY header), not HAProxy's.
	totals := map[string]int{}
	where := map[string]string{}
	for _, r := range replicas {
		metrics := metricsText(t, r)
		ftps, sftpN := counter(metrics, `ferry_uploads_total{protocol="ftps",result="committed"}`), counter(metrics, `ferry_uploads_total{protocol="sftp",result="committed"}`)
		t.Logf("%s: %d FTPS and %d SFTP uploads committed", r.name, ftps, sftpN)
		if ftps == 0 || sftpN == 0 {
			t.Errorf("%s served %d FTPS and %d SFTP uploads: want both replicas to serve some", r.name, ftps, sftpN)
		}
		totals["ftps"] += ftps
		totals["sftp"] += sftpN
		for _, m := range loginRe.FindAllStringSubmatch(r.logs.String(), -1) {
			if prev, ok := where[m[1]]; ok && prev != r.name {
				t.Errorf("client %s logged in on %s and %s: not sticky", m[1], prev, r.name)
			}
			where[m[1]] = r.name
		}
	}
	if totals["ftps"] != byKind["upload"] || totals["sftp"] != len(clientIPs) {
		t.Errorf("uploads counted %v, want %d FTPS and %d SFTP", totals, byKind["upload"], len(clientIPs))
	}
	t.Logf("client address -> replica: %v", where)
	for _, ip := range clientIPs {
		if where[ip] == "" {
			t.Errorf("no login from %s in any replica's log (the PROXY header's address)", ip)
		}
	}
	if strings.Contains(replicas[0].logs.String()+replicas[1].logs.String(), "msg=login component=ftpd remote=127.0.0.1:") {
		t.Error("a replica saw HAProxy's address instead of the client's")
	}
}

var loginRe = regexp.MustCompile(`msg=login .*?remote=(127\.0\.0\.\d+):\d+`)

type transferKind struct {
	download, lftp, implicit, pasv bool
}

// kind spreads the 50 transfers over modes: curl and lftp, explicit and implicit FTPS, EPSV
// (curl's default) and PASV (lftp's default, curl --disable-epsv), up and down (25 each). Client
// i%8 makes transfer i; the mode turns with the round as well, so that every client (and so each
// replica) uploads and downloads.
func kind(i int) transferKind {
	switch (i/len(clientIPs) + i%len(clientIPs)) % 6 {
	case 0:
		return transferKind{}
	case 1:
		return transferKind{download: true, pasv: true}
	case 2:
		return transferKind{lftp: true, pasv: true}
	case 3:
		return transferKind{lftp: true, pasv: true, download: true}
	case 4:
		return transferKind{implicit: true}
	default:
		return transferKind{implicit: true, download: true, pasv: true}
	}
}

func size(i int) int { return 1 + (i*389_713)%1_600_000 }

type ftpClients struct {
	curl, lftp, ca, dir string
	front               lb
}

// transfer runs transfer i from ip and checks its bytes against S3; it returns "upload" or
// "download".
func (f ftpClients) transfer(t *testing.T, srv *s3test.Server, ip string, i int, seeds map[string][]byte) string {
	k := kind(i)
	local := filepath.Join(f.dir, fmt.Sprintf("local-%02d.bin", i))
	var want []byte
	remote := fmt.Sprintf("up-%02d.bin", i)
	if k.download {
		remote = fmt.Sprintf("seed-%02d.bin", i)
		want = seeds[remote]
	} else {
		want = randomBytes(t, size(i))
		if err := os.WriteFile(local, want, 0o600); err != nil {
			t.Error(err)
			return "failed"
		}
	}
	var cmd []string
	if k.lftp {
		op := fmt.Sprintf("put %s -o %s", local, remote)
		if k.download {
			op = fmt.Sprintf("get %s -o %s", remote, local)
		}
		script := strings.Join([]string{
			"set net:socket-bind-ipv4 " + ip, "set ftp:ssl-force true", "set ftp:ssl-protect-data true",
			"set ssl:ca-file " + f.ca, "set ftp:passive-mode true", "set ftp:prefer-epsv false",
			"set net:max-retries 1", "set net:timeout 30", "set xfer:clobber true", "set cmd:fail-exit true",
			fmt.Sprintf("open -u %s,%s -p %d 127.0.0.1", partner, partnerPass, f.front.ftp), op,
		}, "; ")
		cmd = []string{f.lftp, "-c", script}
	} else {
		url := fmt.Sprintf("ftp://127.0.0.1:%d/%s", f.front.ftp, remote)
		if k.implicit {
			url = fmt.Sprintf("ftps://127.0.0.1:%d/%s", f.front.implicit, remote)
		}
		cmd = []string{f.curl, "-sS", "--interface", ip, "--ssl-reqd", "--cacert", f.ca, "--user", partner + ":" + partnerPass,
			"--connect-timeout", "10", "--max-time", "60"}
		if k.pasv {
			cmd = append(cmd, "--disable-epsv")
		}
		if k.download {
			cmd = append(cmd, "-o", local, url)
		} else {
			cmd = append(cmd, "-T", local, url)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cmd[0], cmd[1:]...).CombinedOutput()
	if err != nil {
		t.Errorf("transfer %d (%+v) from %s: %v\n%s", i, k, ip, err, out)
		return "failed"
	}
	var got []byte
	if k.download {
		got, err = os.ReadFile(local)
	} else {
		got, err = getObject(srv, partnerHome+remote)
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("transfer %d (%+v) from %s: %d bytes (%v), want %d bytes sha256 %s", i, k, ip, len(got), err, len(want), sum(want))
		return "failed"
	}
	if k.download {
		return "download"
	}
	return "upload"
}

// sftpSession puts a file and gets it back with OpenSSH's sftp from ip.
func sftpSession(t *testing.T, bin, dir, ip string, front lb, keyFile, knownHosts string, srv *s3test.Server) {
	data := randomBytes(t, 700_000+int(ip[len(ip)-1])*1000)
	local := filepath.Join(dir, "sftp-"+ip+".bin")
	back := local + ".back"
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Error(err)
		return
	}
	remote := "sftp-" + ip + ".bin"
	batch := filepath.Join(dir, "batch-"+ip)
	writeFile(t, batch, fmt.Sprintf("put %s %s\nget %s %s\n", local, remote, remote, back))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-b", batch, "-P", strconv.Itoa(front.sftp), "-i", keyFile,
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "BindAddress="+ip, "-o", "ConnectTimeout=10",
		partner+"@127.0.0.1").CombinedOutput()
	if err != nil {
		t.Errorf("sftp from %s: %v\n%s", ip, err, out)
		return
	}
	got, err := getObject(srv, partnerHome+remote)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("sftp from %s: S3 holds %d bytes (%v), want %d", ip, len(got), err, len(data))
	}
	if back, err := os.ReadFile(back); err != nil || !bytes.Equal(back, data) {
		t.Errorf("sftp from %s: got back %d bytes (%v), want %d", ip, len(back), err, len(data))
	}
}

func startReplica(t *testing.T, name string, srv *s3test.Server, usersKey string, front lb) *replica {
	t.Helper()
	r := &replica{name: name, sftp: testtool.FreeAddr(t), ftp: testtool.FreeAddr(t), health: testtool.FreeAddr(t), metrics: testtool.FreeAddr(t)}
	dir := t.TempDir()
	r.logs = runConfig(t, dir, fmt.Sprintf(`listen:
  sftp: %q
  ftp: %q
  health: %q
  metrics: %q
  proxy_protocol:
    trusted: [127.0.0.1/32]   # HAProxy's address; the clients are 127.0.0.2-9
storage:
  s3: {bucket: %s, endpoint: %s, region: %s, path_style: true}
host_keys:
  paths: []
  generate: false
  pem: "${FERRY_TEST_HOST_KEYS}"
users_file: s3://%s/%s
users_poll_interval: 2s
ftp:
  passive_ports: "%d-%d"
  implicit_tls_port: %d
  tls:
    mode: required
    cert_pem: "${FERRY_TEST_FTPS_CERT}"
    key_pem: "${FERRY_TEST_FTPS_KEY}"
memory_limit: 0
`, r.sftp, r.ftp, r.health, r.metrics, srv.Bucket, srv.Endpoint, srv.Region, srv.Bucket, usersKey,
		front.passive, front.passive+passiveN-1, front.implicit), r.sftp, r.ftp, r.health, r.metrics)
	eventuallyReady(t, r.health, 200, "ready", 20*time.Second)
	return r
}

// startHAProxy runs HAProxy as the NLB is configured and waits until it sees both replicas up
// through their /readyz.
func startHAProxy(t *testing.T, bin, dir string, front lb, replicas []*replica) {
	t.Helper()
	backend := func(name string, addr func(*replica) string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "backend %s\n  balance source\n  option httpchk GET /readyz\n  default-server inter 1s fall 2 rise 2 check-send-proxy\n", name)
		for _, r := range replicas {
			_, health, _ := net.SplitHostPort(r.health)
			fmt.Fprintf(&b, "  server %s %s send-proxy-v2 check port %s\n", r.name, addr(r), health)
		}
		return b.String()
	}
	conf := fmt.Sprintf(`global
  maxconn 2000
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  # The target groups' health check: 5 s timeout, 2 failures to go down, 2 passes to come up
  # (the interval is 10 s on AWS, 1 s here to keep the test short).
  timeout check 5s
# One listener per NLB listener; every FTP one goes to the same backend (target group).
frontend sftp
  bind 127.0.0.1:%d
  default_backend sftp
frontend ftp_control
  bind 127.0.0.1:%d
  default_backend ftp
frontend ftps_implicit
  bind 127.0.0.1:%d
  default_backend ftp
frontend ftp_passive
  bind 127.0.0.1:%d-%d
  default_backend ftp
%s%s
listen stats
  mode http
  bind %s
  stats enable
  stats uri /stats
`, front.sftp, front.ftp, front.implicit, front.passive, front.passive+passiveN-1,
		backend("sftp", func(r *replica) string { return r.sftp }),
		backend("ftp", func(r *replica) string { return r.ftp }), front.stats)
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	writeFile(t, cfgFile, conf)
	if out, err := exec.Command(bin, "-c", "-f", cfgFile).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s\n%s", err, out, conf)
	}
	out := &logbuf.Buffer{Max: 64 << 10}
	cmd := exec.Command(bin, "-db", "-f", cfgFile)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		up := 0
		if resp, err := httpGetQuiet("http://" + front.stats + "/stats;csv"); err == nil {
			for _, line := range strings.Split(resp, "\n") {
				f := strings.Split(line, ",")
				if len(f) > 17 && (f[0] == "ftp" || f[0] == "sftp") && strings.HasPrefix(f[1], "r") && f[17] == "UP" {
					up++
				}
			}
		}
		if up == 2*len(replicas) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("HAProxy does not see every replica up through /readyz after 20s\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func httpGetQuiet(url string) (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func metricsText(t *testing.T, r *replica) string {
	t.Helper()
	code, body := httpGet(t, "http://"+r.metrics+"/metrics")
	if code != 200 {
		t.Fatalf("%s /metrics = %d", r.name, code)
	}
	return body
}

// counter returns the value of the sample named exactly series (0 when absent).
func counter(metrics, series string) int {
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return 0
}

func putObject(t *testing.T, srv *s3test.Server, key string, data []byte) {
	t.Helper()
	if _, err := srv.Client().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
}

func getObject(srv *s3test.Server, key string) ([]byte, error) {
	out, err := srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// newHostKey returns an SSH host key as PEM (what FERRY_HOST_KEYS holds) and its public key line.
func newHostKey(t *testing.T) (privPEM, pub string) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(sk, "")
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pk)
	return string(pem.EncodeToMemory(block)), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
}

// newClientKey writes an OpenSSH client key file and returns it with its authorized_keys line.
func newClientKey(t *testing.T, dir string) (file, authorized string) {
	t.Helper()
	privPEM, pub := newHostKey(t)
	file = filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(file, []byte(privPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, pub + " partner@test"
}

// newCert returns a certificate for 127.0.0.1 and its key, as PEM (FERRY_FTPS_CERT/KEY).
func newCert(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "ferry-replicas-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
}
