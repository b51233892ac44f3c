package iampolicy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

// knownActions are the IAM actions the S3 operations need (the mapping in infra/iam_test.go,
// after AWS's Service Authorization Reference); a policy naming another is a typo.
var knownActions = []string{"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
	"s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}

// knownConditions are the condition operators and keys the policies may use.
var knownConditions = map[string][]string{
	"StringLike": {"s3:prefix"},
	"Null":       {"s3:if-none-match", "s3:if-match"},
	"Bool":       {"s3:ObjectCreationOperation"},
}

func user(home, bucket string, perms ...string) *users.User {
	p, err := users.ParsePermissions(perms)
	if err != nil {
		panic(err)
	}
	return &users.User{Name: "partner", Home: home, Bucket: bucket, Permissions: p}
}

var combos = []struct {
	name string
	u    *users.User
}{
	{"everything", user("incoming/alice/", "", "*")},
	{"read only", user("incoming/alice/", "", "list", "download")},
	{"upload only", user("incoming/alice/", "", "upload")},
	{"overwrite only", user("incoming/alice/", "", "overwrite", "download")},
	{"upload and delete", user("incoming/alice/", "", "list", "upload", "delete")},
	{"whole bucket", user("", "", "list", "download")},
	{"own bucket", user("drop/", "partner-bucket", "list", "upload", "overwrite")},
}

// TestPolicyShape: every policy is a valid IAM document naming only known actions, conditions
// and ARNs of the bucket and the home.
func TestPolicyShape(t *testing.T) {
	arn := regexp.MustCompile(`^arn:aws:s3:::[a-z0-9.-]+(/[^*]*\*)?$`)
	for _, c := range combos {
		p, err := For(c.u, "ferry", "")
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		if doc["Version"] != "2012-10-17" || len(doc) != 2 {
			t.Errorf("%s: document %s", c.name, raw)
		}
		sids := map[string]bool{}
		for _, s := range p.Statement {
			if s.Sid == "" || sids[s.Sid] || (s.Effect != "Allow" && s.Effect != "Deny") || len(s.Action) == 0 || len(s.Resource) == 0 {
				t.Errorf("%s: statement %+v", c.name, s)
			}
			sids[s.Sid] = true
			for _, a := range s.Action {
				if !slices.Contains(knownActions, a) {
					t.Errorf("%s: unknown action %q", c.name, a)
				}
			}
			for _, r := range s.Resource {
				bucket := "ferry"
				if c.u.Bucket != "" {
					bucket = c.u.Bucket
				}
				if !arn.MatchString(r) || !strings.HasPrefix(r, "arn:aws:s3:::"+bucket) ||
					strings.Contains(r, "/") && r != "arn:aws:s3:::"+bucket+"/"+c.u.Home+"*" {
					t.Errorf("%s: resource %q", c.name, r)
				}
			}
			for op, kv := range s.Condition {
				for k := range kv {
					if !slices.Contains(knownConditions[op], k) {
						t.Errorf("%s: condition %s %s", c.name, op, k)
					}
				}
			}
		}
	}
	if _, err := For(user("incoming/x/", "", "rename", "mkdir"), "ferry", ""); err == nil {
		t.Error("a user who may do nothing over S3 got a policy")
	}
	if _, err := For(user("incoming/x/", "", "list"), "", ""); err == nil {
		t.Error("a policy without a bucket")
	}
}

// request is an S3 request as IAM evaluates it.
type request struct {
	action, resource string
	ctx              map[string]string // condition keys present
}

// evaluate is IAM's evaluation of one identity policy for what these policies use: an
// explicit Deny wins, else an Allow is needed; Resource and StringLike match with '*'; Null
// "true" means the key is absent; Bool compares the text.
func evaluate(p Policy, r request) bool {
	allowed := false
	for _, s := range p.Statement {
		if !slices.Contains(s.Action, r.action) || !slices.ContainsFunc(s.Resource, func(res string) bool { return like(res, r.resource) }) {
			continue
		}
		if !conditionsHold(s.Condition, r.ctx) {
			continue
		}
		if s.Effect == "Deny" {
			return false
		}
		allowed = true
	}
	return allowed
}

func conditionsHold(c map[string]map[string]any, ctx map[string]string) bool {
	for op, kv := range c {
		for k, want := range kv {
			v, present := ctx[k]
			switch op {
			case "StringLike":
				if !present || !slices.ContainsFunc(want.([]string), func(p string) bool { return like(p, v) }) {
					return false
				}
			case "Null":
				if (want == "true") == present {
					return false
				}
			case "Bool":
				if !present || v != want {
					return false
				}
			default:
				panic("operator " + op)
			}
		}
	}
	return true
}

func like(pattern, s string) bool {
	re := "^" + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, ".*") + "$"
	return regexp.MustCompile(re).MatchString(s)
}

// TestPolicyMeansPermissions evaluates each policy on the requests a partner makes, inside and
// outside the home, and finds exactly the user's permissions — the table the embedded
// endpoint's own test (s3server TestUserKeysConfined) holds a user's key to.
func TestPolicyMeansPermissions(t *testing.T) {
	const b = "arn:aws:s3:::ferry"
	list := func(prefix string) request {
		return request{"s3:ListBucket", b, map[string]string{"s3:prefix": prefix}}
	}
	obj := func(action, key string, ctx map[string]string) request { return request{action, b + "/" + key, ctx} }
	put := func(key string, header string) request { // a completing write
		ctx := map[string]string{"s3:ObjectCreationOperation": "true"}
		if header != "" {
			ctx[header] = "*"
		}
		return obj("s3:PutObject", key, ctx)
	}
	part := obj("s3:PutObject", "incoming/alice/big.bin", map[string]string{"s3:ObjectCreationOperation": "false"})
	reqs := []struct {
		name string
		r    request
		need func(p users.Permissions) bool
	}{
		{"list the home", list("incoming/alice/"), func(p users.Permissions) bool { return p.List }},
		{"list a folder of it", list("incoming/alice/2026/"), func(p users.Permissions) bool { return p.List }},
		{"list the parent", list("incoming/"), nil},
		{"list beside (incoming/alice)", list("incoming/alice"), nil},
		{"download", obj("s3:GetObject", "incoming/alice/a.csv", nil), func(p users.Permissions) bool { return p.Download }},
		{"download elsewhere", obj("s3:GetObject", "incoming/bob/a.csv", nil), nil},
		{"put a new key (If-None-Match)", put("incoming/alice/a.csv", "s3:if-none-match"), func(p users.Permissions) bool { return p.Upload }},
		{"put over a key (If-Match)", put("incoming/alice/a.csv", "s3:if-match"), func(p users.Permissions) bool { return p.Overwrite }},
		{"put unconditionally", put("incoming/alice/a.csv", ""), func(p users.Permissions) bool { return p.Upload && p.Overwrite }},
		{"a multipart part", part, func(p users.Permissions) bool { return p.Upload || p.Overwrite }},
		{"put elsewhere", put("incoming/bob/a.csv", "s3:if-none-match"), nil},
		{"put beside the home", put("incoming/alice.csv", "s3:if-none-match"), nil},
		{"abort an upload", obj("s3:AbortMultipartUpload", "incoming/alice/a.csv", nil), func(p users.Permissions) bool { return p.Upload || p.Overwrite }},
		{"delete", obj("s3:DeleteObject", "incoming/alice/a.csv", nil), func(p users.Permissions) bool { return p.Delete }},
		{"delete elsewhere", obj("s3:DeleteObject", "incoming/bob/a.csv", nil), nil},
		{"read the users file", obj("s3:GetObject", ".ferry/users.yaml", nil), nil},
		{"tag", obj("s3:PutObjectTagging", "incoming/alice/a.csv", nil), nil},
	}
	for _, c := range combos {
		if c.u.Home != "incoming/alice/" {
			continue
		}
		p, err := For(c.u, "ferry", "")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reqs {
			want := r.need != nil && r.need(c.u.Permissions)
			if got := evaluate(p, r.r); got != want {
				t.Errorf("%s: %s: allowed %v, want %v", c.name, r.name, got, want)
			}
		}
	}
}

// TestPolicyCfnLint hands every policy to cfn-lint as the document of an IAM managed policy:
// AWS's linter checks the document against IAM's schema (effects, condition operators) and the
// action names against S3's. A deliberately broken policy must fail, so the check can fail.
func TestPolicyCfnLint(t *testing.T) {
	bin := testtool.Path(t, "cfn-lint")
	resources := map[string]any{}
	for i, c := range combos {
		p, err := For(c.u, "ferry", "")
		if err != nil {
			t.Fatal(err)
		}
		resources["Policy"+string(rune('A'+i))] = map[string]any{"Type": "AWS::IAM::ManagedPolicy", "Properties": map[string]any{"PolicyDocument": p}}
	}
	lint := func(res map[string]any) (string, error) {
		tpl, err := json.MarshalIndent(map[string]any{"AWSTemplateFormatVersion": "2010-09-09", "Resources": res}, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "policies.json")
		if err := os.WriteFile(file, tpl, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(t.Context(), bin, file).CombinedOutput()
		return string(out), err
	}
	if out, err := lint(resources); err != nil {
		t.Errorf("cfn-lint: %v\n%s", err, out)
	}
	broken, _ := For(combos[0].u, "ferry", "")
	broken.Statement[0].Effect = "Alow"
	broken.Statement[1].Action = []string{"s3:GetObjekt"}
	if out, err := lint(map[string]any{"Broken": map[string]any{"Type": "AWS::IAM::ManagedPolicy",
		"Properties": map[string]any{"PolicyDocument": broken}}}); err == nil || !strings.Contains(out, "Alow") || !strings.Contains(out, "getobjekt") {
		t.Errorf("cfn-lint passed a broken policy: %v\n%s", err, out)
	}
}
