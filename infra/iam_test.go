package infra_test

import (
	"bufio"
	"bytes"
	"sort"
	"strings"
	"testing"
)

// iamActions maps an SDK operation to the IAM actions it needs (AWS's Service Authorization
// Reference). An operation the code starts calling that is not here fails TestIAMFollowsCode.
var iamActions = map[string][]string{
	"s3:HeadObject":    {"s3:GetObject"},
	"s3:GetObject":     {"s3:GetObject"},
	"s3:PutObject":     {"s3:PutObject"},
	"s3:DeleteObject":  {"s3:DeleteObject"},
	"s3:ListObjectsV2": {"s3:ListBucket"},
	"s3:HeadBucket":    {"s3:ListBucket"}, // AWS authorizes HeadBucket as ListBucket
	// Source read, destination write; the source's tags are copied by default
	// (x-amz-tagging-directive COPY), which needs both tagging actions.
	"s3:CopyObject":              {"s3:GetObject", "s3:PutObject", "s3:GetObjectTagging", "s3:PutObjectTagging"},
	"s3:GetObjectTagging":        {"s3:GetObjectTagging"},
	"s3:PutObjectTagging":        {"s3:PutObjectTagging"},
	"s3:CreateMultipartUpload":   {"s3:PutObject"},
	"s3:UploadPart":              {"s3:PutObject"},
	"s3:UploadPartCopy":          {"s3:GetObject", "s3:PutObject"},
	"s3:CompleteMultipartUpload": {"s3:PutObject"},
	"s3:AbortMultipartUpload":    {"s3:AbortMultipartUpload"},
	"s3:ListParts":               {"s3:ListMultipartUploadParts"},
	"s3:ListMultipartUploads":    {"s3:ListBucketMultipartUploads"},
	"eventbridge:PutEvents":      {"events:PutEvents"},
	"sns:Publish":                {"sns:Publish"},
}

// What AWS itself does with a role, beside the binary's own calls.
var (
	lambdaPlatform = map[string]string{
		"logs:CreateLogStream": "Lambda writes the function's logs with its role",
		"logs:PutLogEvents":    "Lambda writes the function's logs with its role",
		"sqs:SendMessage":      "Lambda sends a failed asynchronous invocation to the on-failure queue with the function's role",
	}
	kmsPlatform = map[string]string{
		"kms:Decrypt":         "SSE-KMS: reading an object (and completing a multipart upload) decrypts its data key",
		"kms:GenerateDataKey": "SSE-KMS: writing an object, or publishing to an encrypted topic, needs a data key",
	}
	executionRole = map[string]string{
		"ecr:GetAuthorizationToken":       "ECS logs in to the registry",
		"ecr:BatchCheckLayerAvailability": "ECS pulls the image",
		"ecr:GetDownloadUrlForLayer":      "ECS pulls the image",
		"ecr:BatchGetImage":               "ECS pulls the image",
		"logs:CreateLogStream":            "the awslogs driver",
		"logs:PutLogEvents":               "the awslogs driver",
		"secretsmanager:GetSecretValue":   "ECS injects the secrets as environment variables",
		"kms:Decrypt":                     "secrets under a customer managed key",
	}
	// The only actions that may be granted on Resource "*", because AWS offers no resource type
	// for them; the template line must say so in a comment.
	requiresStar = map[string]bool{"ecr:GetAuthorizationToken": true}
)

// The roles the templates give the binaries.
var roleBinaries = []struct {
	template, role, binary string
	platform               map[string]string
}{
	{"pipeline.yaml", "TransformRole", "./pipeline/cmd/transform", lambdaPlatform},
	{"pipeline.yaml", "NotifyRole", "./pipeline/cmd/notify", lambdaPlatform},
	// The task runs `ferry serve`, which is app.Run: the operator commands of the same binary
	// (ferry user, ferry redrive, ...) run with the operator's credentials, not the task role.
	{"gateway.yaml", "TaskRole", "./gateway/internal/app", nil},
}

// TestIAMFollowsCode derives the AWS operations each binary calls from its code
// (sdkOperations) and fails when its role in the templates lacks an action one of them needs,
// or grants an action, a wildcard action or a "*" resource the code does not need.
func TestIAMFollowsCode(t *testing.T) {
	kms := map[string]string{"KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		"SecretsKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/abcd1234-12ab-34cd-56ef-1234567890ab"}
	for _, rb := range roleBinaries {
		t.Run(rb.role, func(t *testing.T) {
			ops := sdkOperations(t, rb.binary)
			if len(ops) == 0 {
				t.Fatalf("found no AWS operation in %s: the analysis is broken", rb.binary)
			}
			need := map[string]string{} // action -> why
			for _, op := range sortedKeys(ops) {
				actions, ok := iamActions[op]
				if !ok {
					t.Errorf("%s calls %s (%s), which iamActions does not map to IAM actions", rb.binary, op, ops[op])
				}
				t.Logf("%s calls %-28s at %-28s -> %s", rb.binary, op, ops[op], strings.Join(actions, ", "))
				for _, a := range actions {
					if _, ok := need[a]; !ok {
						need[a] = op + " (" + ops[op] + ")"
					}
				}
			}
			for _, withKMS := range []bool{false, true} {
				over := map[string]string{}
				allowed := map[string]string{}
				for a, why := range rb.platform {
					allowed[a] = why
				}
				if withKMS {
					over = kms
					for a, why := range kmsPlatform {
						allowed[a] = why
					}
				}
				granted := roleGrants(t, rb.template, rb.role, over)
				for _, a := range sortedKeys(need) {
					if _, ok := granted[a]; !ok {
						t.Errorf("%s (KMS %v) lacks %s, which %s needs", rb.role, withKMS, a, need[a])
					}
				}
				for _, a := range sortedKeys(granted) {
					_, needed := need[a]
					_, platform := allowed[a]
					switch {
					case strings.Contains(a, "*"):
						t.Errorf("%s grants the wildcard action %s", rb.role, a)
					case !needed && !platform:
						t.Errorf("%s (KMS %v) grants %s, which %s does not call", rb.role, withKMS, a, rb.binary)
					}
					for _, r := range granted[a] {
						if r == "*" && !requiresStar[a] {
							t.Errorf("%s grants %s on every resource (\"*\")", rb.role, a)
						}
					}
				}
				if withKMS {
					for a := range kmsPlatform {
						if _, ok := granted[a]; !ok {
							t.Errorf("%s with a KMS key lacks %s (%s)", rb.role, a, kmsPlatform[a])
						}
					}
				}
			}
		})
	}
	t.Run("ExecutionRole", func(t *testing.T) {
		granted := roleGrants(t, "gateway.yaml", "ExecutionRole", kms)
		want(t, "execution role actions", sortedKeys(granted), sortedKeys(executionRole))
		for a, res := range granted {
			for _, r := range res {
				if r == "*" && !requiresStar[a] {
					t.Errorf("ExecutionRole grants %s on every resource (\"*\")", a)
				}
			}
		}
	})
	t.Run("star resources are explained", func(t *testing.T) {
		for _, name := range templateNames {
			sc := bufio.NewScanner(bytes.NewReader(loadTemplate(t, name).Raw))
			for line := 1; sc.Scan(); line++ {
				l := sc.Text()
				if strings.Contains(l, `Resource: "*"`) && !strings.Contains(l, "#") {
					t.Errorf("%s:%d: Resource \"*\" without a comment saying why AWS requires it", name, line)
				}
			}
		}
	})
}

// roleGrants evaluates role id of template name and returns its allowed actions and the
// resources each is granted on.
func roleGrants(t *testing.T, name, id string, over map[string]string) map[string][]string {
	t.Helper()
	tp := loadTemplate(t, name)
	stack := strings.TrimSuffix(name, ".yaml")
	params := childParams(t, strings.ToUpper(stack[:1])+stack[1:], over)
	c := newEvalCtx(t, tp, params)
	role := c.evalResource(t, tp, id)
	granted := map[string][]string{}
	for _, p := range asList(role["Policies"]) {
		for _, s := range asList(at(p, "PolicyDocument", "Statement")) {
			st := s.(map[string]any)
			for _, k := range []string{"NotAction", "NotResource", "NotPrincipal"} {
				if _, ok := st[k]; ok {
					t.Errorf("%s: %s in a statement: grants are listed, not excluded", id, k)
				}
			}
			if st["Effect"] != "Allow" {
				t.Errorf("%s: a %v statement", id, st["Effect"])
				continue
			}
			for _, a := range stringList(st["Action"]) {
				granted[a] = append(granted[a], stringList(st["Resource"])...)
			}
		}
	}
	for a := range granted {
		sort.Strings(granted[a])
	}
	return granted
}

func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, scalarString(e))
		}
		return out
	}
	return nil
}
