// Package iampolicy writes the IAM policy that confines a partner's own AWS principal (an IAM
// user or role uploading with the S3 API) to what the partner may do through Ferry: their home
// in the bucket and their permissions. It grants exactly what the embedded S3 endpoint allows
// a user's access key (package s3server, grant.go), so a partner moving from the embedded
// default to AWS keeps the same rights:
//
//	list       s3:ListBucket on the bucket, only with an s3:prefix inside the home
//	download   s3:GetObject (GetObject, HeadObject, a copy's source)
//	upload     s3:PutObject, s3:AbortMultipartUpload, s3:ListMultipartUploadParts
//	overwrite  the same
//	delete     s3:DeleteObject (DeleteObject, DeleteObjects)
//
// IAM cannot tell a new key from an existing one, but S3's conditional writes can: a user who
// may upload but not overwrite must send If-None-Match: * (`aws s3 cp` does not; the SDKs'
// IfNoneMatch, `aws s3api put-object --if-none-match "*"` do), and one who may overwrite but not
// upload must send If-Match. The Deny statements enforce that with s3:if-none-match /
// s3:if-match, exempting the multipart steps that take no conditional headers
// (s3:ObjectCreationOperation false), as AWS documents for enforcing conditional writes. Such a
// user cannot copy into the home (S3 refuses conditional headers on CopyObject then).
package iampolicy

import (
	"errors"
	"fmt"

	"github.com/ferrygw/ferry/gateway/internal/users"
)

// Policy is an IAM policy document.
type Policy struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Statement is one statement of a Policy.
type Statement struct {
	Sid       string                    `json:"Sid"`
	Effect    string                    `json:"Effect"`
	Action    []string                  `json:"Action"`
	Resource  []string                  `json:"Resource"`
	Condition map[string]map[string]any `json:"Condition,omitempty"`
}

// ErrNothing reports a user with no permission an S3 principal could use.
var ErrNothing = errors.New("the user may do nothing over S3 (no list, download, upload, overwrite or delete permission)")

// For returns the policy of u in bucket (the user's own bucket wins). partition is "aws" unless
// the bucket is in another partition ("aws-cn", "aws-us-gov").
func For(u *users.User, bucket, partition string) (Policy, error) {
	if u.Bucket != "" {
		bucket = u.Bucket
	}
	if bucket == "" {
		return Policy{}, errors.New("no bucket: the user has none of their own and none was given")
	}
	if partition == "" {
		partition = "aws"
	}
	p := u.Permissions
	if !p.List && !p.Download && !p.Upload && !p.Overwrite && !p.Delete {
		return Policy{}, ErrNothing
	}
	bucketARN := fmt.Sprintf("arn:%s:s3:::%s", partition, bucket)
	objects := bucketARN + "/" + u.Home + "*"
	var st []Statement
	if p.List {
		s := Statement{Sid: "ListHome", Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: []string{bucketARN}}
		if u.Home != "" {
			s.Condition = map[string]map[string]any{"StringLike": {"s3:prefix": []string{u.Home, u.Home + "*"}}}
		}
		st = append(st, s)
	}
	if p.Download {
		st = append(st, Statement{Sid: "Download", Effect: "Allow", Action: []string{"s3:GetObject"}, Resource: []string{objects}})
	}
	if p.Upload || p.Overwrite {
		st = append(st, Statement{Sid: "Write", Effect: "Allow",
			Action: []string{"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}, Resource: []string{objects}})
		switch {
		case p.Upload && !p.Overwrite:
			st = append(st, conditional("UploadOnlyNewKeys", "s3:if-none-match", objects))
		case p.Overwrite && !p.Upload:
			st = append(st, conditional("OverwriteOnlyExistingKeys", "s3:if-match", objects))
		}
	}
	if p.Delete {
		st = append(st, Statement{Sid: "Delete", Effect: "Allow", Action: []string{"s3:DeleteObject"}, Resource: []string{objects}})
	}
	return Policy{Version: "2012-10-17", Statement: st}, nil
}

// conditional denies a completing write (PutObject, CompleteMultipartUpload, CopyObject) that
// lacks the conditional header key.
func conditional(sid, key, resource string) Statement {
	return Statement{Sid: sid, Effect: "Deny", Action: []string{"s3:PutObject"}, Resource: []string{resource},
		Condition: map[string]map[string]any{
			"Null": {key: "true"},
			"Bool": {"s3:ObjectCreationOperation": "true"},
		}}
}
