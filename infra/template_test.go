package infra_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// These tests read the templates themselves: the wiring cfn-lint cannot judge (which listener
// forwards where, which queue catches which rule's dead letters) and every property moto does
// not implement (TestMoto names those gaps and relies on the checks here).

// at walks m along keys; nil when a step is missing.
func at(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func want(t *testing.T, what string, got, exp any) {
	t.Helper()
	if !reflect.DeepEqual(normalize(got), normalize(exp)) {
		t.Errorf("%s = %s, want %s", what, jsonString(got), jsonString(exp))
	}
}

// normalize makes []string and []any, and ints and float64s, compare equal.
func normalize(v any) any {
	var out any
	b, _ := json.Marshal(v)
	_ = json.Unmarshal(b, &out)
	return out
}

// Root parameter values for the checks (the required ones have no default).
var rootParams = map[string]string{
	"BucketName": "ferry-infra-test", "ImageUri": "example.com/ferry:test",
	"VpcId": "vpc-1", "VpcCidr": "10.0.0.0/16",
	"LoadBalancerSubnetIds": "subnet-1,subnet-2", "TaskSubnetIds": "subnet-3,subnet-4",
	"HostKeysSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ferry/host-keys",
	"FtpsCertSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ferry/ftps-cert",
	"FtpsKeySecretArn":  "arn:aws:secretsmanager:us-east-1:123456789012:secret:ferry/ftps-key",
}

// childParams evaluates what the root passes to nested stack id, with the root's parameters
// overridden by over, and the outputs of the other nested stacks as placeholders.
func childParams(t *testing.T, id string, over map[string]string) map[string]string {
	t.Helper()
	root := loadTemplate(t, "ferry.yaml")
	vals := map[string]string{}
	for k, v := range rootParams {
		vals[k] = v
	}
	for k, v := range over {
		vals[k] = v
	}
	ctx := newEvalCtx(t, root, vals)
	ctx.name = "ferry"
	ctx.getAtt = func(res, attr string) (any, error) {
		out, ok := strings.CutPrefix(attr, "Outputs.")
		if !ok {
			return nil, fmt.Errorf("GetAtt %s.%s", res, attr)
		}
		if res == "Storage" && out == "BucketName" {
			return vals["BucketName"], nil // the bucket stack outputs its parameter
		}
		return "output:" + res + "." + out, nil
	}
	props := ctx.evalResource(t, root, id)
	params := map[string]string{}
	for k, v := range props["Parameters"].(map[string]any) {
		params[k] = scalarString(v)
	}
	return params
}

func TestStorageTemplate(t *testing.T) {
	tp := loadTemplate(t, "storage.yaml")
	t.Run("defaults", func(t *testing.T) {
		c := newEvalCtx(t, tp, childParams(t, "Storage", nil))
		b := c.evalResource(t, tp, "Bucket")
		want(t, "BucketName", b["BucketName"], "ferry-infra-test")
		want(t, "EventBridge notifications", at(b, "NotificationConfiguration", "EventBridgeConfiguration", "EventBridgeEnabled"), true)
		want(t, "public access block", b["PublicAccessBlockConfiguration"], map[string]any{
			"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true})
		want(t, "ownership", at(b, "OwnershipControls", "Rules"), []any{map[string]any{"ObjectOwnership": "BucketOwnerEnforced"}})
		want(t, "encryption", at(b, "BucketEncryption", "ServerSideEncryptionConfiguration"), []any{
			map[string]any{"ServerSideEncryptionByDefault": map[string]any{"SSEAlgorithm": "AES256"}}})
		want(t, "versioning", b["VersioningConfiguration"], nil)
		rules := lifecycleRules(t, b)
		want(t, "abort incomplete multipart uploads", rules["abort-incomplete-multipart-uploads"], map[string]any{
			"Id": "abort-incomplete-multipart-uploads", "Status": "Enabled",
			"AbortIncompleteMultipartUpload": map[string]any{"DaysAfterInitiation": 1}})
		want(t, "ledger expiry", rules["expire-ledger"], map[string]any{
			"Id": "expire-ledger", "Status": "Enabled", "Prefix": ".ferry/ledger/", "ExpirationInDays": "30"})
		want(t, "quarantine expiry status", at(rules["expire-quarantine"], "Status"), "Disabled")
		want(t, "noncurrent versions status", at(rules["expire-noncurrent-versions"], "Status"), "Disabled")
		pol := c.evalResource(t, tp, "BucketPolicy")
		tlsOnly := false
		for _, s := range at(pol, "PolicyDocument", "Statement").([]any) {
			if at(s, "Effect") == "Deny" && at(s, "Condition", "Bool", "aws:SecureTransport") == "false" {
				want(t, "TLS-only resources", at(s, "Resource"), []any{"getatt:Bucket.Arn", "getatt:Bucket.Arn/*"})
				want(t, "TLS-only action", at(s, "Action"), "s3:*")
				want(t, "TLS-only principal", at(s, "Principal"), "*")
				tlsOnly = true
			}
		}
		if !tlsOnly {
			t.Error("the bucket policy does not deny requests without TLS")
		}
	})
	t.Run("kms, versioning, quarantine expiry", func(t *testing.T) {
		key := "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
		c := newEvalCtx(t, tp, childParams(t, "Storage", map[string]string{
			"KmsKeyArn": key, "Versioning": "Enabled", "QuarantineExpirationDays": "60"}))
		b := c.evalResource(t, tp, "Bucket")
		want(t, "encryption", at(b, "BucketEncryption", "ServerSideEncryptionConfiguration"), []any{map[string]any{
			"ServerSideEncryptionByDefault": map[string]any{"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key},
			"BucketKeyEnabled":              true}})
		want(t, "versioning", b["VersioningConfiguration"], map[string]any{"Status": "Enabled"})
		rules := lifecycleRules(t, b)
		want(t, "quarantine expiry", rules["expire-quarantine"], map[string]any{
			"Id": "expire-quarantine", "Status": "Enabled", "Prefix": "quarantine/", "ExpirationInDays": "60"})
		want(t, "noncurrent versions status", at(rules["expire-noncurrent-versions"], "Status"), "Enabled")
	})
}

func lifecycleRules(t *testing.T, bucket map[string]any) map[string]any {
	t.Helper()
	rules := map[string]any{}
	for _, r := range at(bucket, "LifecycleConfiguration", "Rules").([]any) {
		rules[at(r, "Id").(string)] = r
	}
	return rules
}

// lambdaSpec is what each function must be.
var lambdaSpec = []struct {
	fn, role, logs, invoke, failed, rule, dlq, perm, code, concurrency string
}{
	{"TransformFunction", "TransformRole", "TransformLogGroup", "TransformInvokeConfig", "TransformFailedQueue",
		"TransformRule", "TransformDeliveryDlq", "TransformInvokePermission", "../dist/transform.zip", "TransformConcurrency"},
	{"NotifyFunction", "NotifyRole", "NotifyLogGroup", "NotifyInvokeConfig", "NotifyFailedQueue",
		"NotifyRule", "NotifyDeliveryDlq", "NotifyInvokePermission", "../dist/notify.zip", "NotifyConcurrency"},
}

func TestPipelineTemplate(t *testing.T) {
	tp := loadTemplate(t, "pipeline.yaml")
	params := childParams(t, "Pipeline", map[string]string{"ExtraIncomingPrefix": "drop/", "NotificationEmail": "team@example.com"})
	c := newEvalCtx(t, tp, params)
	for _, s := range lambdaSpec {
		t.Run(s.fn, func(t *testing.T) {
			f := c.evalResource(t, tp, s.fn)
			want(t, "runtime", f["Runtime"], "provided.al2023")
			want(t, "architectures", f["Architectures"], []any{"arm64"})
			want(t, "handler", f["Handler"], "bootstrap")
			want(t, "code (packaged by make lambdas)", f["Code"], s.code)
			want(t, "role", f["Role"], "getatt:"+s.role+".Arn")
			want(t, "reserved concurrency", f["ReservedConcurrentExecutions"], params[s.concurrency])
			want(t, "logging", f["LoggingConfig"], map[string]any{
				"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "WARN", "LogGroup": "ref:" + s.logs})
			lg := c.evalResource(t, tp, s.logs)
			want(t, "log retention", lg["RetentionInDays"], "90")
			if !strings.HasPrefix(lg["LogGroupName"].(string), "/aws/lambda/ferry-") {
				t.Errorf("log group %v", lg["LogGroupName"])
			}

			ic := c.evalResource(t, tp, s.invoke)
			want(t, "invoke config function", ic["FunctionName"], "ref:"+s.fn)
			want(t, "invoke config retries", ic["MaximumRetryAttempts"], "2")
			want(t, "invoke config on-failure", at(ic, "DestinationConfig", "OnFailure", "Destination"), "getatt:"+s.failed+".Arn")

			r := c.evalResource(t, tp, s.rule)
			want(t, "rule bus", r["EventBusName"], "default")
			targets := r["Targets"].([]any)
			if len(targets) != 1 {
				t.Fatalf("rule %s has %d targets", s.rule, len(targets))
			}
			want(t, "target", at(targets[0], "Arn"), "getatt:"+s.fn+".Arn")
			want(t, "target retry policy", at(targets[0], "RetryPolicy"), map[string]any{
				"MaximumRetryAttempts": "185", "MaximumEventAgeInSeconds": "86400"})
			want(t, "target dead-letter queue", at(targets[0], "DeadLetterConfig", "Arn"), "getatt:"+s.dlq+".Arn")

			p := c.evalResource(t, tp, s.perm)
			want(t, "permission", p, map[string]any{"FunctionName": "ref:" + s.fn, "Action": "lambda:InvokeFunction",
				"Principal": "events.amazonaws.com", "SourceArn": "getatt:" + s.rule + ".Arn"})

			// EventBridge may write to the rule's dead-letter queue, for this rule only.
			qp := c.evalResource(t, tp, "DeliveryDlqPolicy")
			found := false
			for _, st := range at(qp, "PolicyDocument", "Statement").([]any) {
				if at(st, "Resource") == "getatt:"+s.dlq+".Arn" {
					want(t, "dlq policy", st, map[string]any{"Sid": at(st, "Sid"), "Effect": "Allow",
						"Principal": map[string]any{"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
						"Resource":  "getatt:" + s.dlq + ".Arn",
						"Condition": map[string]any{"ArnEquals": map[string]any{"aws:SourceArn": "getatt:" + s.rule + ".Arn"}}})
					found = true
				}
			}
			if !found {
				t.Errorf("no queue policy lets EventBridge write to %s", s.dlq)
			}
			for _, q := range []string{s.dlq, s.failed} {
				qq := c.evalResource(t, tp, q)
				want(t, q+" retention", qq["MessageRetentionPeriod"], 1209600)
				want(t, q+" encryption", qq["SqsManagedSseEnabled"], true)
			}
		})
	}
	t.Run("patterns", func(t *testing.T) {
		tr := c.evalResource(t, tp, "TransformRule")
		want(t, "transform pattern", tr["EventPattern"], map[string]any{
			"source": []any{"aws.s3", "ferry.redrive"}, "detail-type": []any{"Object Created"},
			"detail": map[string]any{"bucket": map[string]any{"name": []any{"ferry-infra-test"}},
				"object": map[string]any{"key": []any{map[string]any{"prefix": "incoming/"}, map[string]any{"prefix": "drop/"}}}}})
		nr := c.evalResource(t, tp, "NotifyRule")
		want(t, "notify pattern", nr["EventPattern"], map[string]any{
			"source": []any{"ferry.pipeline"}, "detail-type": []any{"File Processed", "File Rejected"}})
	})
	t.Run("sns", func(t *testing.T) {
		topic := c.evalResource(t, tp, "NotificationTopic")
		want(t, "topic key", topic["KmsMasterKeyId"], "alias/aws/sns")
		sub := c.evalResource(t, tp, "ExampleSubscription")
		want(t, "example subscription", sub, map[string]any{"TopicArn": "ref:NotificationTopic", "Protocol": "email",
			"Endpoint": "team@example.com", "FilterPolicyScope": "MessageAttributes",
			"FilterPolicy": map[string]any{"dataset": []any{"demo"}}})
		none := newEvalCtx(t, tp, childParams(t, "Pipeline", nil))
		if none.evalResource(t, tp, "ExampleSubscription") != nil {
			t.Error("an example subscription without NotificationEmail")
		}
	})
}

func TestGatewayTemplate(t *testing.T) {
	tp := loadTemplate(t, "gateway.yaml")
	params := childParams(t, "Gateway", map[string]string{"EnableImplicitFtps": "true"})
	want(t, "passive block the root derives from 30000-30031", params["PassivePortBlock"], "300")
	c := newEvalCtx(t, tp, params)

	t.Run("listeners", func(t *testing.T) {
		ports := map[int]string{}
		for _, id := range tp.ofType("AWS::ElasticLoadBalancingV2::Listener") {
			l := c.evalResource(t, tp, id)
			if l == nil {
				continue
			}
			want(t, id+" load balancer", l["LoadBalancerArn"], "ref:LoadBalancer")
			want(t, id+" protocol", l["Protocol"], "TCP")
			acts := l["DefaultActions"].([]any)
			if len(acts) != 1 || at(acts[0], "Type") != "forward" {
				t.Fatalf("%s actions %s", id, jsonString(acts))
			}
			var port int
			fmt.Sscan(scalarString(l["Port"]), &port)
			if _, dup := ports[port]; dup {
				t.Errorf("port %d has two listeners", port)
			}
			ports[port] = at(acts[0], "TargetGroupArn").(string)
		}
		want(t, "SFTP", ports[22], "ref:SftpTargetGroup")
		want(t, "FTP control", ports[21], "ref:FtpTargetGroup")
		want(t, "implicit FTPS", ports[990], "ref:FtpTargetGroup")
		for p := 30000; p <= 30031; p++ {
			if ports[p] != "ref:FtpTargetGroup" {
				t.Errorf("passive port %d -> %q, want the FTP target group", p, ports[p])
			}
		}
		if len(ports) != 35 {
			t.Errorf("%d listeners, want 35 (SFTP, FTP, FTPS and 32 passive ports)", len(ports))
		}
		noFtps := newEvalCtx(t, tp, childParams(t, "Gateway", nil))
		if noFtps.evalResource(t, tp, "FtpsImplicitListener") != nil || noFtps.evalResource(t, tp, "LoadBalancerIngressFtpsImplicit") != nil {
			t.Error("port 990 open without EnableImplicitFtps")
		}
	})
	t.Run("target groups", func(t *testing.T) {
		for id, port := range map[string]string{"SftpTargetGroup": "2222", "FtpTargetGroup": "2121"} {
			tg := c.evalResource(t, tp, id)
			want(t, id+" port", scalarString(tg["Port"]), port)
			want(t, id+" target type", tg["TargetType"], "ip")
			want(t, id+" protocol", tg["Protocol"], "TCP")
			want(t, id+" health check", []any{tg["HealthCheckProtocol"], tg["HealthCheckPort"], tg["HealthCheckPath"]},
				[]any{"HTTP", "8080", "/readyz"})
			attrs := map[string]string{}
			for _, a := range tg["TargetGroupAttributes"].([]any) {
				attrs[at(a, "Key").(string)] = scalarString(at(a, "Value"))
			}
			want(t, id+" proxy protocol v2", attrs["proxy_protocol_v2.enabled"], "true")
			want(t, id+" draining", attrs["deregistration_delay.timeout_seconds"], "300")
			if id == "FtpTargetGroup" {
				want(t, "FTP stickiness", []string{attrs["stickiness.enabled"], attrs["stickiness.type"]}, []string{"true", "source_ip"})
			}
		}
	})
	t.Run("security groups", func(t *testing.T) {
		lb := c.evalResource(t, tp, "LoadBalancerSecurityGroup")
		var passive any
		for _, r := range lb["SecurityGroupIngress"].([]any) {
			if at(r, "Description") == "FTP passive data" {
				passive = []any{at(r, "FromPort"), at(r, "ToPort")}
			}
		}
		want(t, "passive range open on the NLB", passive, []any{"30000", "30031"})
		ing := c.evalResource(t, tp, "LoadBalancerIngressFtpsImplicit")
		want(t, "implicit FTPS ingress", []any{ing["FromPort"], ing["ToPort"]}, []any{990, 990})
		for _, id := range []string{"TaskIngressSftp", "TaskIngressFtp", "TaskIngressHealth"} {
			want(t, id+" source", c.evalResource(t, tp, id)["SourceSecurityGroupId"], "ref:LoadBalancerSecurityGroup")
		}
	})
	t.Run("service", func(t *testing.T) {
		s := c.evalResource(t, tp, "Service")
		want(t, "launch type", s["LaunchType"], "FARGATE")
		want(t, "desired count", s["DesiredCount"], "2")
		if min := at(tp.section("Parameters"), "DesiredCount", "MinValue"); scalarString(min) != "2" {
			t.Errorf("DesiredCount MinValue %v, want 2", min)
		}
		want(t, "circuit breaker", at(s, "DeploymentConfiguration", "DeploymentCircuitBreaker"), map[string]any{"Enable": true, "Rollback": true})
		want(t, "load balancers", s["LoadBalancers"], []any{
			map[string]any{"ContainerName": "ferry", "ContainerPort": 2222, "TargetGroupArn": "ref:SftpTargetGroup"},
			map[string]any{"ContainerName": "ferry", "ContainerPort": 2121, "TargetGroupArn": "ref:FtpTargetGroup"}})
		pol := c.evalResource(t, tp, "CpuScalingPolicy")
		want(t, "scaling", []any{pol["PolicyType"], at(pol, "TargetTrackingScalingPolicyConfiguration", "PredefinedMetricSpecification", "PredefinedMetricType")},
			[]any{"TargetTrackingScaling", "ECSServiceAverageCPUUtilization"})
		boot := newEvalCtx(t, tp, childParams(t, "Gateway", map[string]string{"Bootstrap": "true"}))
		want(t, "first deploy: no task before the users file exists", boot.evalResource(t, tp, "Service")["DesiredCount"], 0)
		want(t, "first deploy: autoscaling held at 0", []any{boot.evalResource(t, tp, "ScalableTarget")["MinCapacity"], boot.evalResource(t, tp, "ScalableTarget")["MaxCapacity"]}, []any{0, 0})
		st := c.evalResource(t, tp, "ScalableTarget")
		want(t, "scalable target", []any{st["ResourceId"], st["MinCapacity"], st["ScalableDimension"]},
			[]any{"service/ref:Cluster/getatt:Service.Name", "2", "ecs:service:DesiredCount"})
	})
	t.Run("task definition", func(t *testing.T) {
		td := c.evalResource(t, tp, "TaskDefinition")
		want(t, "compatibility", td["RequiresCompatibilities"], []any{"FARGATE"})
		want(t, "roles", []any{td["ExecutionRoleArn"], td["TaskRoleArn"]}, []any{"getatt:ExecutionRole.Arn", "getatt:TaskRole.Arn"})
		cd := td["ContainerDefinitions"].([]any)[0]
		env, secrets := taskEnvironment(t, cd)
		want(t, "environment", env, map[string]string{
			"FERRY_BUCKET": "ferry-infra-test", "FERRY_USERS_FILE": "s3://ferry-infra-test/.ferry/users.yaml",
			"FERRY_REGION": "us-east-1", "FERRY_EVENT_BUS": "default", "FERRY_PASSIVE_PORTS": "30000-30031",
			"FERRY_PUBLIC_HOST": "", "FERRY_PROXY_TRUSTED": "10.0.0.0/16"})
		want(t, "secrets", secrets, map[string]string{
			"FERRY_HOST_KEYS": rootParams["HostKeysSecretArn"], "FERRY_FTPS_CERT": rootParams["FtpsCertSecretArn"],
			"FERRY_FTPS_KEY": rootParams["FtpsKeySecretArn"]})
		want(t, "log driver", at(cd, "LogConfiguration", "LogDriver"), "awslogs")
		want(t, "log group", at(cd, "LogConfiguration", "Options", "awslogs-group"), "ref:LogGroup")
		want(t, "log retention", c.evalResource(t, tp, "LogGroup")["RetentionInDays"], "90")
		var ports []float64
		for _, p := range at(cd, "PortMappings").([]any) {
			ports = append(ports, at(p, "ContainerPort").(float64))
		}
		want(t, "container ports", ports, []float64{2222, 2121, 8080, 9100})
	})
	t.Run("metric filters", func(t *testing.T) {
		var names []string
		for _, id := range tp.ofType("AWS::Logs::MetricFilter") {
			f := c.evalResource(t, tp, id)
			want(t, id+" log group", f["LogGroupName"], "ref:LogGroup")
			m := f["MetricTransformations"].([]any)[0]
			want(t, id+" namespace", at(m, "MetricNamespace"), "Ferry/ferry/Gateway")
			names = append(names, at(m, "MetricName").(string))
		}
		sort.Strings(names)
		want(t, "gateway metrics", names, []string{"DroppedEvents", "Errors", "LoginFailures", "UploadsNotStored"})
	})
}

// taskEnvironment returns a container definition's Environment and Secrets as maps.
func taskEnvironment(t *testing.T, cd any) (env, secrets map[string]string) {
	t.Helper()
	env, secrets = map[string]string{}, map[string]string{}
	for _, e := range at(cd, "Environment").([]any) {
		env[at(e, "Name").(string)] = scalarString(at(e, "Value"))
	}
	for _, e := range at(cd, "Secrets").([]any) {
		secrets[at(e, "Name").(string)] = scalarString(at(e, "ValueFrom"))
	}
	return env, secrets
}

func TestMonitoringTemplate(t *testing.T) {
	tp := loadTemplate(t, "monitoring.yaml")
	params := childParams(t, "Monitoring", map[string]string{"AlarmEmail": "ops@example.com"})
	c := newEvalCtx(t, tp, params)
	// Every signal the issue names has an alarm that tells the alarm topic.
	watched := map[string]bool{}
	for _, id := range tp.ofType("AWS::CloudWatch::Alarm") {
		a := c.evalResource(t, tp, id)
		want(t, id+" actions", a["AlarmActions"], []any{"ref:AlarmTopic"})
		key := at(a, "Namespace").(string) + " " + at(a, "MetricName").(string)
		for _, d := range asList(a["Dimensions"]) {
			key += " " + scalarString(at(d, "Value"))
		}
		watched[key] = true
	}
	for _, k := range []string{
		"AWS/SQS ApproximateNumberOfMessagesVisible output:Pipeline.TransformDeliveryDlqName",
		"AWS/SQS ApproximateNumberOfMessagesVisible output:Pipeline.TransformFailedQueueName",
		"AWS/SQS ApproximateNumberOfMessagesVisible output:Pipeline.NotifyDeliveryDlqName",
		"AWS/SQS ApproximateNumberOfMessagesVisible output:Pipeline.NotifyFailedQueueName",
		"AWS/Lambda Errors output:Pipeline.TransformFunctionName",
		"AWS/Lambda Throttles output:Pipeline.TransformFunctionName",
		"AWS/Lambda Errors output:Pipeline.NotifyFunctionName",
		"AWS/Lambda Throttles output:Pipeline.NotifyFunctionName",
		"AWS/NetworkELB UnHealthyHostCount output:Gateway.LoadBalancerFullName output:Gateway.SftpTargetGroupFullName",
		"AWS/NetworkELB UnHealthyHostCount output:Gateway.LoadBalancerFullName output:Gateway.FtpTargetGroupFullName",
		"output:Gateway.MetricNamespace LoginFailures",
		"output:Gateway.MetricNamespace UploadsNotStored",
		"output:Gateway.MetricNamespace DroppedEvents",
		"output:Gateway.MetricNamespace Errors",
	} {
		if !watched[k] {
			t.Errorf("no alarm on %s", k)
		}
	}
	if len(watched) != 14 {
		t.Errorf("%d alarms, want 14", len(watched))
	}
	sub := c.evalResource(t, tp, "AlarmSubscription")
	want(t, "alarm e-mail", []any{sub["Protocol"], sub["Endpoint"]}, []any{"email", "ops@example.com"})
	d := c.evalResource(t, tp, "Dashboard")
	var body struct {
		Widgets []struct {
			Properties struct{ Title string } `json:"properties"`
		} `json:"widgets"`
	}
	if err := json.Unmarshal([]byte(d["DashboardBody"].(string)), &body); err != nil {
		t.Fatalf("dashboard body: %v", err)
	}
	if len(body.Widgets) < 6 {
		t.Errorf("dashboard has %d widgets", len(body.Widgets))
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
