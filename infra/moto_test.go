package infra_test

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// One moto_server per test binary, started by the first test that needs it and stopped by
// TestMain; one deployment of the templates into it, shared by the tests that check it.
var (
	motoOnce sync.Once
	motoSrv  *motoServer
	motoErr  error

	deployOnce sync.Once
	deployed   *deployment
	deployErr  error

	// Temporary folders of the shared fixtures, removed by TestMain.
	sharedDirs   []string
	sharedDirsMu sync.Mutex
)

func TestMain(m *testing.M) {
	code := m.Run()
	if motoSrv != nil {
		motoSrv.stop()
	}
	sharedDirsMu.Lock()
	for _, d := range sharedDirs {
		os.RemoveAll(d)
	}
	sharedDirsMu.Unlock()
	os.Exit(code)
}

func sharedTempDir(pattern string) (string, error) {
	d, err := os.MkdirTemp("", pattern)
	if err == nil {
		sharedDirsMu.Lock()
		sharedDirs = append(sharedDirs, d)
		sharedDirsMu.Unlock()
	}
	return d, err
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type motoServer struct {
	URL string // http://127.0.0.1:PORT
	cmd *exec.Cmd
	out *syncBuffer
}

func (m *motoServer) stop() {
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
	}
}

// unsupportedTypes are the resource types moto's CloudFormation skipped ("Tried to parse X but
// it's not supported"): it reports the stack CREATE_COMPLETE without them.
func (m *motoServer) unsupportedTypes() []string {
	seen := map[string]bool{}
	for _, g := range regexp.MustCompile(`Tried to parse (\S+) but it's not supported`).FindAllStringSubmatch(m.out.String(), -1) {
		seen[g[1]] = true
	}
	var types []string
	for t := range seen {
		types = append(types, t)
	}
	sort.Strings(types)
	return types
}

func startMoto(t testing.TB) *motoServer {
	t.Helper()
	bin := testtool.Path(t, "moto_server")
	motoOnce.Do(func() { motoSrv, motoErr = launchMoto(bin) })
	if motoErr != nil {
		t.Fatal(motoErr)
	}
	return motoSrv
}

func launchMoto(bin string) (*motoServer, error) {
	port, err := testtool.FreePortErr()
	if err != nil {
		return nil, err
	}
	m := &motoServer{URL: fmt.Sprintf("http://127.0.0.1:%d", port), out: &syncBuffer{}}
	m.cmd = exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	dieWithTest(m.cmd)
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(m.URL + "/moto-api/data.json")
		if err == nil {
			resp.Body.Close()
			return m, nil
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, fmt.Errorf("moto_server did not answer on %s within 30s: %v\n%s", m.URL, err, m.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// awsConfig is an SDK configuration that talks to moto.
func (m *motoServer) awsConfig() aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(m.URL),
	}
}

func (m *motoServer) s3() *s3.Client {
	return s3.NewFromConfig(m.awsConfig(), func(o *s3.Options) { o.UsePathStyle = true })
}

// cliEnv is the environment for the AWS CLI against moto.
func (m *motoServer) cliEnv() []string {
	return append(os.Environ(), "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"AWS_DEFAULT_REGION=us-east-1", "AWS_ENDPOINT_URL="+m.URL, "AWS_PAGER=", "AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null")
}

func (m *motoServer) cli(ctx context.Context, aws string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, aws, args...)
	cmd.Env = m.cliEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("aws %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// deployment is the templates deployed into moto.
type deployment struct {
	moto    *motoServer
	params  map[string]string            // the root stack's parameters
	stacks  map[string]string            // nested stack id -> moto stack name
	outputs map[string]map[string]string // nested stack id -> outputs
	ids     map[string]map[string]string // nested stack id -> logical id -> physical id
	gaps    []string                     // what moto could not do, by name
	root    *template                    // ferry.yaml as packaged
	dir     string                       // the copied templates and stand-in packages
}

const (
	testStack  = "ferry"
	testBucket = "ferry-infra-test"
)

// deploy packages the root template with the AWS CLI and creates its nested stacks in moto.
func deploy(t testing.TB) *deployment {
	t.Helper()
	m := startMoto(t)
	awsCLI := testtool.Path(t, "aws")
	deployOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		deployed, deployErr = deployTemplates(ctx, m, awsCLI)
	})
	if deployErr != nil {
		t.Fatal(deployErr)
	}
	return deployed
}

func deployTemplates(ctx context.Context, m *motoServer, awsCLI string) (*deployment, error) {
	dir, err := sharedTempDir("ferry-infra-")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "infra"), 0o755); err != nil {
		return nil, err
	}
	for _, name := range templateNames {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "infra", name), data, 0o644); err != nil {
			return nil, err
		}
	}
	// Stand-in Lambda packages: moto stores the code but cannot run it (that needs Docker), so
	// the real bootstraps from `make lambdas` would prove nothing more here; `aws cloudformation
	// package` uploads these exactly as it uploads those.
	for _, fn := range []string{"transform", "notify"} {
		if err := writeZip(filepath.Join(dir, "dist", fn+".zip"), "bootstrap", "#!/bin/sh\necho stand-in "+fn+"\n"); err != nil {
			return nil, err
		}
	}
	s3c := m.s3()
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("ferry-artifacts")}); err != nil {
		return nil, fmt.Errorf("artifacts bucket: %w", err)
	}
	packaged := filepath.Join(dir, "packaged.yaml")
	if _, err := m.cli(ctx, awsCLI, "cloudformation", "package", "--template-file", filepath.Join(dir, "infra", "ferry.yaml"),
		"--s3-bucket", "ferry-artifacts", "--output-template-file", packaged); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(packaged)
	if err != nil {
		return nil, err
	}
	root, err := parseTemplate(raw)
	if err != nil {
		return nil, fmt.Errorf("packaged root: %w", err)
	}
	d := &deployment{moto: m, stacks: map[string]string{}, outputs: map[string]map[string]string{}, ids: map[string]map[string]string{}}

	vpc, subnets, err := createNetwork(ctx, m, awsCLI)
	if err != nil {
		return nil, err
	}
	d.params = map[string]string{}
	for k, v := range rootParams {
		d.params[k] = v
	}
	d.params["BucketName"] = testBucket
	d.params["VpcId"] = vpc
	d.params["LoadBalancerSubnetIds"] = strings.Join(subnets, ",")
	d.params["TaskSubnetIds"] = strings.Join(subnets, ",")
	d.params["ExtraIncomingPrefix"] = "drop/"
	d.params["NotificationEmail"] = "team@example.com"
	d.params["AlarmEmail"] = "ops@example.com"
	d.params["EnableImplicitFtps"] = "true"
	d.gaps = append(d.gaps, "AWS::CloudFormation::Stack: moto cannot Fn::GetAtt a nested stack's Outputs "+
		"('Stack' object has no attribute 'get_cfn_attribute'); each nested stack is created on its own "+
		"with the parameters ferry.yaml passes it, evaluated by this test")

	cfn := cloudformation.NewFromConfig(m.awsConfig())
	rootTmpl := &template{Name: "ferry.yaml", Raw: raw, Doc: root}
	d.root = rootTmpl
	d.dir = dir
	for _, id := range []string{"Storage", "Pipeline", "Gateway", "Monitoring"} {
		res := rootTmpl.section("Resources")[id].(map[string]any)
		u, err := url.Parse(at(res, "Properties", "TemplateURL").(string))
		if err != nil {
			return nil, err
		}
		bucket, key, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
		get, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			return nil, fmt.Errorf("%s: packaged template %s: %w", id, u, err)
		}
		body, _ := io.ReadAll(get.Body)
		get.Body.Close()
		params, err := d.nestedParams(rootTmpl, id)
		if err != nil {
			return nil, err
		}
		in := &cloudformation.CreateStackInput{
			StackName:    aws.String(testStack + "-" + strings.ToLower(id)),
			Capabilities: []cfntypes.Capability{cfntypes.CapabilityCapabilityIam, cfntypes.CapabilityCapabilityNamedIam},
			// The S3 address `aws cloudformation package` would hand CloudFormation.
			TemplateURL: aws.String("https://s3.amazonaws.com/" + bucket + "/" + key),
		}
		if id == "Gateway" {
			stripped, err := stripTCPListeners(body)
			if err != nil {
				return nil, err
			}
			in.TemplateURL, in.TemplateBody = nil, aws.String(stripped)
			d.gaps = append(d.gaps, "AWS::ElasticLoadBalancingV2::Listener with Protocol TCP: moto refuses it "+
				"(\"Listener protocol 'TCP' must be one of 'HTTP, HTTPS'\"); the 35 NLB listeners are left out of "+
				"the moto deployment and checked from the template (TestGatewayTemplate/listeners)")
		}
		for k, v := range params {
			in.Parameters = append(in.Parameters, cfntypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(v)})
		}
		if _, err := cfn.CreateStack(ctx, in); err != nil {
			return nil, fmt.Errorf("create %s: %w", id, err)
		}
		d.stacks[id] = aws.ToString(in.StackName)
		if err := d.waitCreated(ctx, cfn, id); err != nil {
			return nil, err
		}
		if err := d.collect(ctx, cfn, id, body); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// nestedParams evaluates the Parameters the root passes to nested stack id.
func (d *deployment) nestedParams(root *template, id string) (map[string]string, error) {
	c := &evalCtx{name: testStack, params: map[string]any{}, conds: map[string]bool{}}
	for name, p := range root.section("Parameters") {
		v, ok := d.params[name]
		if !ok {
			v = scalarString(at(p, "Default"))
		}
		if typ, _ := at(p, "Type").(string); strings.HasPrefix(typ, "List<") || typ == "CommaDelimitedList" {
			c.params[name] = strings.Split(v, ",")
		} else {
			c.params[name] = v
		}
	}
	c.ref = func(id string) (any, error) { return nil, fmt.Errorf("Ref %s", id) }
	c.getAtt = func(res, attr string) (any, error) {
		out, ok := strings.CutPrefix(attr, "Outputs.")
		v, found := d.outputs[res][out]
		if !ok || !found {
			return nil, fmt.Errorf("GetAtt %s.%s: not deployed", res, attr)
		}
		return v, nil
	}
	props, err := c.eval(at(root.section("Resources")[id], "Properties", "Parameters"))
	if err != nil {
		return nil, fmt.Errorf("%s parameters: %w", id, err)
	}
	params := map[string]string{}
	for k, v := range props.(map[string]any) {
		params[k] = scalarString(v)
	}
	return params, nil
}

func (d *deployment) waitCreated(ctx context.Context, cfn *cloudformation.Client, id string) error {
	for {
		out, err := cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(d.stacks[id])})
		if err != nil {
			return fmt.Errorf("describe %s: %w", id, err)
		}
		s := out.Stacks[0]
		switch s.StackStatus {
		case cfntypes.StackStatusCreateComplete:
			return nil
		case cfntypes.StackStatusCreateInProgress:
		default:
			return fmt.Errorf("stack %s: %s %s\nmoto log:\n%s", id, s.StackStatus, aws.ToString(s.StackStatusReason), tail(d.moto.out.String(), 4000))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stack %s: %w", id, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// collect records the stack's resources and outputs. Outputs moto could not compute are
// computed here from the deployed resources, and named as gaps.
func (d *deployment) collect(ctx context.Context, cfn *cloudformation.Client, id string, body []byte) error {
	d.ids[id] = map[string]string{}
	p := cloudformation.NewListStackResourcesPaginator(cfn, &cloudformation.ListStackResourcesInput{StackName: aws.String(d.stacks[id])})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, r := range page.StackResourceSummaries {
			d.ids[id][aws.ToString(r.LogicalResourceId)] = aws.ToString(r.PhysicalResourceId)
		}
	}
	out, err := cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(d.stacks[id])})
	if err != nil {
		return err
	}
	d.outputs[id] = map[string]string{}
	for _, o := range out.Stacks[0].Outputs {
		d.outputs[id][aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	child, err := parseTemplate(body)
	if err != nil {
		return err
	}
	tp := &template{Name: id, Doc: child}
	var missing []string
	for name := range tp.section("Outputs") {
		if _, ok := d.outputs[id][name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	c := &evalCtx{name: d.stacks[id], params: map[string]any{}, conds: map[string]bool{}}
	stackParams, err := d.nestedParams(d.root, id)
	if err != nil {
		return err
	}
	for k, v := range stackParams {
		c.params[k] = v
	}
	c.ref = func(res string) (any, error) {
		if v, ok := d.ids[id][res]; ok {
			return v, nil
		}
		return nil, fmt.Errorf("no resource %s", res)
	}
	c.getAtt = func(res, attr string) (any, error) { return d.attribute(ctx, id, res, attr) }
	for _, name := range missing {
		v, err := c.eval(at(tp.section("Outputs")[name], "Value"))
		if err != nil {
			return fmt.Errorf("%s output %s: %w", id, name, err)
		}
		d.outputs[id][name] = scalarString(v)
	}
	d.gaps = append(d.gaps, fmt.Sprintf("%s stack Outputs %s: moto returned none (it cannot GetAtt "+
		"LoadBalancer.LoadBalancerFullName); computed from the deployed resources", id, strings.Join(missing, ", ")))
	return nil
}

// attribute answers the GetAtt attributes the templates' outputs use, from moto's APIs.
func (d *deployment) attribute(ctx context.Context, stack, res, attr string) (any, error) {
	phys := d.ids[stack][res]
	cfg := d.moto.awsConfig()
	switch attr {
	case "DNSName", "LoadBalancerFullName":
		out, err := elbv2.NewFromConfig(cfg).DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{phys}})
		if err != nil || len(out.LoadBalancers) != 1 {
			return nil, fmt.Errorf("load balancer %s: %v", phys, err)
		}
		if attr == "DNSName" {
			return aws.ToString(out.LoadBalancers[0].DNSName), nil
		}
		_, full, _ := strings.Cut(aws.ToString(out.LoadBalancers[0].LoadBalancerArn), ":loadbalancer/")
		return full, nil
	case "TargetGroupFullName":
		_, full, ok := strings.Cut(phys, ":targetgroup/")
		if !ok {
			return nil, fmt.Errorf("target group ARN %s", phys)
		}
		return "targetgroup/" + full, nil
	case "Name":
		out, err := ecs.NewFromConfig(cfg).DescribeServices(ctx, &ecs.DescribeServicesInput{
			Cluster: aws.String(d.ids[stack]["Cluster"]), Services: []string{phys}})
		if err != nil || len(out.Services) != 1 {
			return nil, fmt.Errorf("service %s: %v", phys, err)
		}
		return aws.ToString(out.Services[0].ServiceName), nil
	}
	return nil, fmt.Errorf("GetAtt %s.%s: not computed by this test", res, attr)
}

// stripTCPListeners returns the gateway template, as JSON, without its NLB listeners.
func stripTCPListeners(body []byte) (string, error) {
	doc, err := parseTemplate(body)
	if err != nil {
		return "", err
	}
	res := doc["Resources"].(map[string]any)
	n := 0
	for id, r := range res {
		if at(r, "Type") == "AWS::ElasticLoadBalancingV2::Listener" {
			delete(res, id)
			n++
		}
	}
	if n != 35 {
		return "", fmt.Errorf("gateway template has %d listeners, want 35", n)
	}
	for _, r := range res {
		delete(r.(map[string]any), "DependsOn") // the service waits for the listeners on AWS
	}
	return jsonString(doc), nil
}

// createNetwork makes the VPC and two subnets the gateway stack is given.
func createNetwork(ctx context.Context, m *motoServer, awsCLI string) (string, []string, error) {
	out, err := m.cli(ctx, awsCLI, "ec2", "create-vpc", "--cidr-block", "10.0.0.0/16", "--query", "Vpc.VpcId", "--output", "text")
	if err != nil {
		return "", nil, err
	}
	vpc := strings.TrimSpace(string(out))
	var subnets []string
	for i, az := range []string{"us-east-1a", "us-east-1b"} {
		out, err := m.cli(ctx, awsCLI, "ec2", "create-subnet", "--vpc-id", vpc, "--cidr-block", fmt.Sprintf("10.0.%d.0/24", i+1),
			"--availability-zone", az, "--query", "Subnet.SubnetId", "--output", "text")
		if err != nil {
			return "", nil, err
		}
		subnets = append(subnets, strings.TrimSpace(string(out)))
	}
	return vpc, subnets, nil
}

func writeZip(path, name, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, ExternalAttrs: 0o755 << 16})
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, content); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
