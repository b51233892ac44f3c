package infra_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// What the moto deployment cannot show, and which test checks it from the template instead.
var templateChecked = map[string]string{
	"AWS::S3::BucketPolicy":                       "TestStorageTemplate (TLS-only bucket policy)",
	"AWS::SQS::QueuePolicy":                       "TestPipelineTemplate (EventBridge may write to each rule's dead-letter queue)",
	"AWS::SNS::Subscription":                      "TestPipelineTemplate/sns (example subscription, filter policy on dataset)",
	"AWS::Lambda::EventInvokeConfig":              "TestPipelineTemplate (max retries, on-failure queue)",
	"AWS::Logs::MetricFilter":                     "TestGatewayTemplate/metric_filters and TestGatewayLogs (patterns against the gateway's real lines)",
	"AWS::EC2::SecurityGroupEgress":               "TestGatewayTemplate/security_groups",
	"AWS::ApplicationAutoScaling::ScalableTarget": "TestGatewayTemplate/service (CPU target tracking)",
	"AWS::ApplicationAutoScaling::ScalingPolicy":  "TestGatewayTemplate/service (CPU target tracking)",
	"AWS::CloudWatch::Alarm":                      "TestMonitoringTemplate (every alarm and its action)",
}

// TestMotoDeploy creates the stacks in moto (TestMain's one moto_server) and checks through the
// AWS APIs what was created. Where moto lacks a resource type or property the gap is logged by
// name and the template test that covers it is named.
func TestMotoDeploy(t *testing.T) {
	d := deploy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, g := range d.gaps {
		t.Logf("moto gap: %s", g)
	}
	for _, typ := range d.moto.unsupportedTypes() {
		where, ok := templateChecked[typ]
		if !ok {
			t.Errorf("moto skipped %s and no template test is named for it", typ)
			continue
		}
		t.Logf("moto gap: %s is not implemented by moto's CloudFormation (the stack completes without it); checked by %s", typ, where)
	}
	gap := func(t *testing.T, what, where string) {
		t.Helper()
		t.Logf("moto gap: %s; checked by %s", what, where)
	}
	cfg := d.moto.awsConfig()

	t.Run("bucket", func(t *testing.T) {
		s3c := d.moto.s3()
		enc, err := s3c.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(testBucket)})
		if err != nil {
			t.Fatal(err)
		}
		want(t, "SSE", enc.ServerSideEncryptionConfiguration.Rules[0].ApplyServerSideEncryptionByDefault.SSEAlgorithm, "AES256")
		ver, err := s3c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(testBucket)})
		if err != nil {
			t.Fatal(err)
		}
		want(t, "versioning", string(ver.Status), "")
		notif, err := s3c.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String(testBucket)})
		if err != nil {
			t.Fatal(err)
		}
		if notif.EventBridgeConfiguration == nil {
			gap(t, "AWS::S3::Bucket NotificationConfiguration.EventBridgeConfiguration is not applied (get-bucket-notification-configuration is empty)", "TestStorageTemplate")
		}
		if _, err := s3c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String(testBucket)}); err != nil {
			gap(t, "AWS::S3::Bucket LifecycleConfiguration is not applied ("+apiError(err)+")", "TestStorageTemplate, and here through the S3 API")
		} else {
			t.Error("moto now applies LifecycleConfiguration: check its rules here")
		}
		// What CloudFormation would have applied, through S3's own API: S3 validates the rules.
		st, sc := d.expect(t, "Storage")
		rules := lifecycleFromTemplate(t, sc.evalResource(t, st, "Bucket"))
		if _, err := s3c.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{Bucket: aws.String(testBucket),
			LifecycleConfiguration: &s3types.BucketLifecycleConfiguration{Rules: rules}}); err != nil {
			t.Fatalf("S3 refuses the template's lifecycle rules: %v", err)
		}
		lc, err := s3c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String(testBucket)})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, r := range lc.Rules {
			desc := string(r.Status)
			if r.Filter != nil && r.Filter.Prefix != nil {
				desc += " prefix=" + aws.ToString(r.Filter.Prefix)
			}
			if r.AbortIncompleteMultipartUpload != nil {
				desc += fmt.Sprintf(" abort-mpu=%dd", aws.ToInt32(r.AbortIncompleteMultipartUpload.DaysAfterInitiation))
			}
			if r.Expiration != nil {
				desc += fmt.Sprintf(" expire=%dd", aws.ToInt32(r.Expiration.Days))
			}
			got[aws.ToString(r.ID)] = desc
		}
		want(t, "lifecycle through the S3 API", got, map[string]string{
			"abort-incomplete-multipart-uploads": "Enabled prefix= abort-mpu=1d",
			"expire-ledger":                      "Enabled prefix=.ferry/ledger/ expire=30d",
			"expire-quarantine":                  "Disabled prefix=quarantine/ expire=1d",
			"expire-noncurrent-versions":         "Disabled prefix=",
		})
		if _, err := s3c.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: aws.String(testBucket)}); err != nil {
			gap(t, "AWS::S3::Bucket PublicAccessBlockConfiguration is not applied ("+apiError(err)+")", "TestStorageTemplate")
		} else {
			t.Error("moto now applies PublicAccessBlockConfiguration: check it here")
		}
		if _, err := s3c.GetBucketOwnershipControls(ctx, &s3.GetBucketOwnershipControlsInput{Bucket: aws.String(testBucket)}); err != nil {
			gap(t, "AWS::S3::Bucket OwnershipControls is not applied ("+apiError(err)+")", "TestStorageTemplate")
		}
	})

	pl, pc := d.expect(t, "Pipeline")
	t.Run("lambdas", func(t *testing.T) {
		lc := lambda.NewFromConfig(cfg)
		for _, s := range lambdaSpec {
			exp := pc.evalResource(t, pl, s.fn)
			name := d.ids["Pipeline"][s.fn]
			f, err := lc.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
			if err != nil {
				t.Fatal(err)
			}
			c := f.Configuration
			want(t, name+" runtime", string(c.Runtime), exp["Runtime"])
			want(t, name+" handler", aws.ToString(c.Handler), exp["Handler"])
			want(t, name+" memory", fmt.Sprint(aws.ToInt32(c.MemorySize)), scalarString(exp["MemorySize"]))
			want(t, name+" timeout", fmt.Sprint(aws.ToInt32(c.Timeout)), scalarString(exp["Timeout"]))
			want(t, name+" role", aws.ToString(c.Role), exp["Role"])
			want(t, name+" environment", c.Environment.Variables, at(exp, "Environment", "Variables"))
			// The code is the package `aws cloudformation package` uploaded.
			zip, err := os.ReadFile(filepath.Join(d.dir, "dist", strings.TrimPrefix(name, testStack+"-")+".zip"))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(zip)
			want(t, name+" code", aws.ToString(c.CodeSha256), base64.StdEncoding.EncodeToString(sum[:]))
			if len(c.Architectures) == 1 && string(c.Architectures[0]) == "arm64" {
				t.Logf("%s: arm64 through the API", name)
			} else {
				gap(t, fmt.Sprintf("AWS::Lambda::Function Architectures is ignored (moto reports %v)", c.Architectures), "TestPipelineTemplate (arm64)")
			}
			if c.LoggingConfig != nil && c.LoggingConfig.LogFormat != "" {
				want(t, name+" log format", string(c.LoggingConfig.LogFormat), "JSON")
			} else {
				gap(t, "AWS::Lambda::Function LoggingConfig is ignored (GetFunction returns none)", "TestPipelineTemplate (JSON logs into the retained log group)")
			}
			conc, err := lc.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String(name)})
			if err != nil {
				t.Fatal(err)
			}
			want(t, name+" reserved concurrency", fmt.Sprint(aws.ToInt32(conc.ReservedConcurrentExecutions)), scalarString(exp["ReservedConcurrentExecutions"]))
			if _, err := lc.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String(name)}); err == nil {
				t.Errorf("%s: moto now has an event invoke config: check it here", name)
			}
		}
	})
	t.Run("log groups", func(t *testing.T) {
		lc := cloudwatchlogs.NewFromConfig(cfg)
		out, err := lc.DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int32{}
		for _, g := range out.LogGroups {
			got[aws.ToString(g.LogGroupName)] = aws.ToInt32(g.RetentionInDays)
		}
		want(t, "log groups and retention", got, map[string]int32{
			"/aws/lambda/ferry-transform": 90, "/aws/lambda/ferry-notify": 90, "/ferry/ferry/gateway": 90})
		mf, err := lc.DescribeMetricFilters(ctx, &cloudwatchlogs.DescribeMetricFiltersInput{LogGroupName: aws.String("/ferry/ferry/gateway")})
		if err != nil {
			t.Fatal(err)
		}
		if len(mf.MetricFilters) != 0 {
			t.Error("moto now creates metric filters: check them here")
		}
	})
	t.Run("rules", func(t *testing.T) {
		eb := eventbridge.NewFromConfig(cfg)
		for _, s := range lambdaSpec {
			exp := pc.evalResource(t, pl, s.rule)
			name := d.ids["Pipeline"][s.rule]
			r, err := eb.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String(name)})
			if err != nil {
				t.Fatal(err)
			}
			var pattern any
			if err := json.Unmarshal([]byte(aws.ToString(r.EventPattern)), &pattern); err != nil {
				t.Fatalf("%s pattern: %v", name, err)
			}
			want(t, name+" pattern", pattern, exp["EventPattern"])
			want(t, name+" state", string(r.State), "ENABLED")
			tg, err := eb.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String(name)})
			if err != nil {
				t.Fatal(err)
			}
			if len(tg.Targets) != 1 {
				t.Fatalf("%s: %d targets", name, len(tg.Targets))
			}
			et := exp["Targets"].([]any)[0]
			want(t, name+" target", aws.ToString(tg.Targets[0].Arn), at(et, "Arn"))
			want(t, name+" dead-letter queue", aws.ToString(tg.Targets[0].DeadLetterConfig.Arn), at(et, "DeadLetterConfig", "Arn"))
			want(t, name+" retry policy", []string{fmt.Sprint(aws.ToInt32(tg.Targets[0].RetryPolicy.MaximumRetryAttempts)), fmt.Sprint(aws.ToInt32(tg.Targets[0].RetryPolicy.MaximumEventAgeInSeconds))},
				[]string{scalarString(at(et, "RetryPolicy", "MaximumRetryAttempts")), scalarString(at(et, "RetryPolicy", "MaximumEventAgeInSeconds"))})
		}
	})
	t.Run("queues", func(t *testing.T) {
		qc := sqs.NewFromConfig(cfg)
		for _, q := range []string{"TransformDeliveryDlq", "TransformFailedQueue", "NotifyDeliveryDlq", "NotifyFailedQueue"} {
			exp := pc.evalResource(t, pl, q)
			u, err := qc.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(exp["QueueName"].(string))})
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			a, err := qc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: u.QueueUrl,
				AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
			if err != nil {
				t.Fatal(err)
			}
			want(t, q+" retention", a.Attributes["MessageRetentionPeriod"], "1209600")
			if v, ok := a.Attributes["SqsManagedSseEnabled"]; ok {
				want(t, q+" encryption", v, "true")
			} else {
				gap(t, "AWS::SQS::Queue SqsManagedSseEnabled is not reported", "TestPipelineTemplate")
			}
		}
	})
	t.Run("topic", func(t *testing.T) {
		sc := sns.NewFromConfig(cfg)
		arn := d.outputs["Pipeline"]["NotificationTopicArn"]
		a, err := sc.GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String(arn)})
		if err != nil {
			t.Fatal(err)
		}
		want(t, "topic key", a.Attributes["KmsMasterKeyId"], "alias/aws/sns")
		subs, err := sc.ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(arn)})
		if err != nil {
			t.Fatal(err)
		}
		if len(subs.Subscriptions) != 0 {
			t.Error("moto now creates AWS::SNS::Subscription: check the filter policy here")
		}
	})
	t.Run("roles", func(t *testing.T) {
		ic := iam.NewFromConfig(cfg)
		gw, gc := d.expect(t, "Gateway")
		for _, r := range []struct {
			stack, id string
			tp        *template
			c         *evalCtx
		}{
			{"Pipeline", "TransformRole", pl, pc}, {"Pipeline", "NotifyRole", pl, pc},
			{"Gateway", "TaskRole", gw, gc}, {"Gateway", "ExecutionRole", gw, gc},
		} {
			exp := r.c.evalResource(t, r.tp, r.id)
			name := d.ids[r.stack][r.id]
			role, err := ic.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
			if err != nil {
				t.Fatal(err)
			}
			want(t, name+" trust", decodePolicy(t, aws.ToString(role.Role.AssumeRolePolicyDocument)), exp["AssumeRolePolicyDocument"])
			for _, p := range exp["Policies"].([]any) {
				pol, err := ic.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(at(p, "PolicyName").(string))})
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				doc := aws.ToString(pol.PolicyDocument)
				if dec, err := url.QueryUnescape(doc); err == nil {
					doc = dec
				}
				if strings.HasPrefix(doc, "{'") {
					gap(t, name+": AWS::IAM::Role Policies with an AWS::NoValue statement come back as a Python literal with None in its place", "this test, which reads it as JSON without the None")
					doc = pythonToJSON(doc)
				}
				want(t, name+" policy", dropNulls(decodePolicy(t, doc)), at(p, "PolicyDocument"))
			}
		}
	})

	gw, gc := d.expect(t, "Gateway")
	t.Run("load balancer", func(t *testing.T) {
		ec := elbv2.NewFromConfig(cfg)
		lb, err := ec.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{d.ids["Gateway"]["LoadBalancer"]}})
		if err != nil {
			t.Fatal(err)
		}
		want(t, "scheme", string(lb.LoadBalancers[0].Scheme), "internet-facing")
		want(t, "security groups", lb.LoadBalancers[0].SecurityGroups, []string{d.ids["Gateway"]["LoadBalancerSecurityGroup"]})
		if typ := string(lb.LoadBalancers[0].Type); typ != "network" {
			gap(t, "AWS::ElasticLoadBalancingV2::LoadBalancer Type network is ignored (moto creates an "+typ+" load balancer)", "TestGatewayTemplate")
		}
		for _, id := range []string{"SftpTargetGroup", "FtpTargetGroup"} {
			exp := gc.evalResource(t, gw, id)
			tgs, err := ec.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{d.ids["Gateway"][id]}})
			if err != nil {
				t.Fatal(err)
			}
			g := tgs.TargetGroups[0]
			want(t, id, []any{string(g.Protocol), aws.ToInt32(g.Port), string(g.TargetType), string(g.HealthCheckProtocol), aws.ToString(g.HealthCheckPort), aws.ToString(g.HealthCheckPath)},
				[]any{exp["Protocol"], exp["Port"], exp["TargetType"], exp["HealthCheckProtocol"], exp["HealthCheckPort"], exp["HealthCheckPath"]})
			attrs, err := ec.DescribeTargetGroupAttributes(ctx, &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: g.TargetGroupArn})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, a := range attrs.Attributes {
				got[aws.ToString(a.Key)] = aws.ToString(a.Value)
			}
			if got["proxy_protocol_v2.enabled"] != "true" {
				gap(t, id+" TargetGroupAttributes are ignored (no proxy_protocol_v2.enabled)", "TestGatewayTemplate/target_groups")
			}
		}
	})
	t.Run("security groups", func(t *testing.T) {
		awsCLI := testtool.Path(t, "aws")
		out, err := d.moto.cli(ctx, awsCLI, "ec2", "describe-security-groups", "--group-ids",
			d.ids["Gateway"]["LoadBalancerSecurityGroup"], d.ids["Gateway"]["TaskSecurityGroup"], "--output", "json")
		if err != nil {
			t.Fatal(err)
		}
		var sgs struct {
			SecurityGroups []struct {
				GroupId       string
				IpPermissions []struct {
					FromPort, ToPort int
					IpRanges         []struct{ CidrIp string }
					UserIdGroupPairs []struct{ GroupId string }
				}
			}
		}
		if err := json.Unmarshal(out, &sgs); err != nil {
			t.Fatal(err)
		}
		rules := map[string][]string{}
		for _, g := range sgs.SecurityGroups {
			for _, p := range g.IpPermissions {
				for _, r := range p.IpRanges {
					rules[g.GroupId] = append(rules[g.GroupId], fmt.Sprintf("%d-%d %s", p.FromPort, p.ToPort, r.CidrIp))
				}
				for _, r := range p.UserIdGroupPairs {
					rules[g.GroupId] = append(rules[g.GroupId], fmt.Sprintf("%d-%d %s", p.FromPort, p.ToPort, r.GroupId))
				}
			}
			sort.Strings(rules[g.GroupId])
		}
		lbsg, tasksg := d.ids["Gateway"]["LoadBalancerSecurityGroup"], d.ids["Gateway"]["TaskSecurityGroup"]
		want(t, "NLB ingress", rules[lbsg], []string{"21-21 0.0.0.0/0", "22-22 0.0.0.0/0", "30000-30031 0.0.0.0/0", "990-990 0.0.0.0/0"})
		want(t, "task ingress", rules[tasksg], []string{"2121-2121 " + lbsg, "2222-2222 " + lbsg, "8080-8080 " + lbsg, "9100-9100 10.0.0.0/16"})
	})
	t.Run("service", func(t *testing.T) {
		ec := ecs.NewFromConfig(cfg)
		svc, err := ec.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(d.ids["Gateway"]["Cluster"]), Services: []string{d.ids["Gateway"]["Service"]}})
		if err != nil || len(svc.Services) != 1 {
			t.Fatalf("service: %v", err)
		}
		s := svc.Services[0]
		want(t, "desired count", s.DesiredCount, int32(2))
		if string(s.LaunchType) != "FARGATE" {
			gap(t, "AWS::ECS::Service LaunchType FARGATE is reported as "+string(s.LaunchType), "TestGatewayTemplate/service")
		}
		if len(s.LoadBalancers) == 0 {
			gap(t, "AWS::ECS::Service LoadBalancers are not reported", "TestGatewayTemplate/service (2222 -> SFTP, 2121 -> FTP target group)")
		}
		if s.DeploymentConfiguration == nil || s.DeploymentConfiguration.DeploymentCircuitBreaker == nil {
			gap(t, "AWS::ECS::Service DeploymentConfiguration (circuit breaker) is not reported", "TestGatewayTemplate/service")
		}
		// The SDK cannot read moto's task definition (memory comes back as a number): the CLI can.
		out, err := d.moto.cli(ctx, testtool.Path(t, "aws"), "ecs", "describe-task-definition", "--task-definition", d.ids["Gateway"]["TaskDefinition"], "--output", "json")
		if err != nil {
			t.Fatal(err)
		}
		var td struct {
			TaskDefinition struct {
				Cpu, Memory                   any
				NetworkMode                   string
				ExecutionRoleArn, TaskRoleArn string
				RequiresCompatibilities       []string
				ContainerDefinitions          []struct {
					Image            string
					Environment      []struct{ Name, Value string }
					Secrets          []struct{ Name, ValueFrom string }
					LogConfiguration struct {
						LogDriver string
						Options   map[string]string
					}
					ReadonlyRootFilesystem bool
				}
			}
		}
		if err := json.Unmarshal(out, &td); err != nil {
			t.Fatal(err)
		}
		exp := gc.evalResource(t, gw, "TaskDefinition")
		want(t, "memory", scalarString(td.TaskDefinition.Memory), scalarString(exp["Memory"]))
		if td.TaskDefinition.NetworkMode != "awsvpc" || td.TaskDefinition.Cpu == nil || td.TaskDefinition.TaskRoleArn == "" {
			gap(t, fmt.Sprintf("AWS::ECS::TaskDefinition NetworkMode, Cpu, RuntimePlatform, ExecutionRoleArn and TaskRoleArn are dropped (moto reports network mode %q, cpu %v, task role %q)",
				td.TaskDefinition.NetworkMode, td.TaskDefinition.Cpu, td.TaskDefinition.TaskRoleArn), "TestGatewayTemplate/task_definition")
		} else {
			t.Error("moto now keeps the task definition's network mode, cpu and roles: check them here")
		}
		cd := td.TaskDefinition.ContainerDefinitions[0]
		env, secrets := map[string]string{}, map[string]string{}
		for _, e := range cd.Environment {
			env[e.Name] = e.Value
		}
		for _, e := range cd.Secrets {
			secrets[e.Name] = e.ValueFrom
		}
		expEnv, expSecrets := taskEnvironment(t, exp["ContainerDefinitions"].([]any)[0])
		want(t, "environment", env, expEnv)
		want(t, "secrets", secrets, expSecrets)
		want(t, "image", cd.Image, rootParams["ImageUri"])
		want(t, "read-only root", cd.ReadonlyRootFilesystem, true)
		want(t, "logs", []string{cd.LogConfiguration.LogDriver, cd.LogConfiguration.Options["awslogs-group"]}, []string{"awslogs", "/ferry/ferry/gateway"})
	})
	t.Run("monitoring", func(t *testing.T) {
		// CloudWatch's SDK speaks CBOR, which moto does not: the CLI reads the dashboard.
		awsCLI := testtool.Path(t, "aws")
		out, err := d.moto.cli(ctx, awsCLI, "cloudwatch", "get-dashboard", "--dashboard-name", testStack, "--output", "json")
		if err != nil {
			t.Fatal(err)
		}
		var db struct{ DashboardBody string }
		if err := json.Unmarshal(out, &db); err != nil {
			t.Fatal(err)
		}
		var parsed map[string]any
		if err := json.Unmarshal([]byte(db.DashboardBody), &parsed); err != nil {
			t.Fatalf("dashboard body: %v", err)
		}
		for _, s := range []string{"ferry-transform", "ferry-notify", "ferry-transform-delivery-dlq", d.outputs["Gateway"]["LoadBalancerFullName"], "Ferry/ferry/Gateway"} {
			if !strings.Contains(db.DashboardBody, s) {
				t.Errorf("dashboard does not show %s", s)
			}
		}
		out, err = d.moto.cli(ctx, awsCLI, "cloudwatch", "describe-alarms", "--output", "json")
		if err != nil {
			t.Fatal(err)
		}
		var alarms struct{ MetricAlarms []any }
		if err := json.Unmarshal(out, &alarms); err != nil {
			t.Fatal(err)
		}
		if len(alarms.MetricAlarms) != 0 {
			t.Error("moto now creates alarms: check them here")
		}
		if _, err := sns.NewFromConfig(cfg).GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String(d.outputs["Monitoring"]["AlarmTopicArn"])}); err != nil {
			t.Errorf("alarm topic: %v", err)
		}
	})
}

// lifecycleFromTemplate turns the template's lifecycle rules (CloudFormation's shape) into the
// S3 API's.
func lifecycleFromTemplate(t *testing.T, bucket map[string]any) []s3types.LifecycleRule {
	t.Helper()
	days := func(v any) *int32 {
		var n int32
		if _, err := fmt.Sscan(scalarString(v), &n); err != nil {
			t.Fatalf("days %v", v)
		}
		return aws.Int32(n)
	}
	var rules []s3types.LifecycleRule
	for _, r := range asList(at(bucket, "LifecycleConfiguration", "Rules")) {
		prefix, _ := at(r, "Prefix").(string)
		lr := s3types.LifecycleRule{ID: aws.String(at(r, "Id").(string)), Status: s3types.ExpirationStatus(at(r, "Status").(string)),
			Filter: &s3types.LifecycleRuleFilter{Prefix: aws.String(prefix)}}
		if v := at(r, "AbortIncompleteMultipartUpload", "DaysAfterInitiation"); v != nil {
			lr.AbortIncompleteMultipartUpload = &s3types.AbortIncompleteMultipartUpload{DaysAfterInitiation: days(v)}
		}
		if v := at(r, "ExpirationInDays"); v != nil {
			lr.Expiration = &s3types.LifecycleExpiration{Days: days(v)}
		}
		if v := at(r, "NoncurrentVersionExpiration", "NoncurrentDays"); v != nil {
			lr.NoncurrentVersionExpiration = &s3types.NoncurrentVersionExpiration{NoncurrentDays: days(v)}
		}
		rules = append(rules, lr)
	}
	return rules
}

// expect returns nested stack id's template and an evaluator that resolves it as moto did: the
// parameters the root passed and the physical ids moto gave.
func (d *deployment) expect(t *testing.T, id string) (*template, *evalCtx) {
	t.Helper()
	tp := loadTemplate(t, strings.ToLower(id)+".yaml")
	params, err := d.nestedParams(d.root, id)
	if err != nil {
		t.Fatal(err)
	}
	c := newEvalCtx(t, tp, params)
	c.name = d.stacks[id]
	c.ref = func(res string) (any, error) {
		if v, ok := d.ids[id][res]; ok {
			return v, nil
		}
		return nil, fmt.Errorf("%s: no resource %s in moto", id, res)
	}
	c.getAtt = func(res, attr string) (any, error) {
		phys, ok := d.ids[id][res]
		if !ok {
			return nil, fmt.Errorf("%s: no resource %s in moto", id, res)
		}
		typ := at(tp.section("Resources")[res], "Type")
		const acct = "123456789012"
		switch {
		case attr == "Arn" && typ == "AWS::Lambda::Function":
			return "arn:aws:lambda:us-east-1:" + acct + ":function:" + phys, nil
		case attr == "Arn" && typ == "AWS::SQS::Queue":
			return "arn:aws:sqs:us-east-1:" + acct + ":" + phys[strings.LastIndex(phys, "/")+1:], nil
		case attr == "QueueName" && typ == "AWS::SQS::Queue":
			return phys[strings.LastIndex(phys, "/")+1:], nil
		case attr == "Arn" && typ == "AWS::IAM::Role":
			return "arn:aws:iam::" + acct + ":role/" + phys, nil
		case attr == "Arn" && typ == "AWS::Logs::LogGroup":
			// AWS ends it with ":*" (every stream of the group); moto does not.
			return "arn:aws:logs:us-east-1:" + acct + ":log-group:" + phys, nil
		case attr == "Arn" && typ == "AWS::Events::Rule":
			return "arn:aws:events:us-east-1:" + acct + ":rule/" + phys, nil
		case attr == "Arn" && typ == "AWS::S3::Bucket":
			return "arn:aws:s3:::" + phys, nil
		}
		return d.attribute(context.Background(), id, res, attr)
	}
	return tp, c
}

// decodePolicy parses an IAM policy document as the IAM API returns it (URL-encoded JSON).
func decodePolicy(t *testing.T, doc string) any {
	t.Helper()
	if dec, err := url.QueryUnescape(doc); err == nil {
		doc = dec
	}
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("policy %q: %v", doc, err)
	}
	return v
}

// pythonToJSON reads the Python literal moto stores for some policies.
func pythonToJSON(s string) string {
	r := strings.NewReplacer("'", `"`, "None", "null", "True", "true", "False", "false")
	return r.Replace(s)
}

// dropNulls removes null list elements (moto's None for an AWS::NoValue statement).
func dropNulls(v any) any {
	switch x := v.(type) {
	case []any:
		out := []any{}
		for _, e := range x {
			if e != nil {
				out = append(out, dropNulls(e))
			}
		}
		return out
	case map[string]any:
		for k, e := range x {
			x[k] = dropNulls(e)
		}
	}
	return v
}

func apiError(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "api error "); i >= 0 {
		return s[i+len("api error "):]
	}
	return s
}
