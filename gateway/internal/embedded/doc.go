// Package embedded is Ferry without AWS, in the gateway's process: what `make run` starts. One
// constructor, Start, builds all of it from the config's embedded section:
//
//   - the S3-compatible endpoint on a local directory (package s3server over s3disk), with its
//     own credentials and the users' own keys (UseUsers);
//   - the event log (pipeline/bus): every change the endpoint makes becomes the event AWS S3
//     would send to EventBridge (FromChange), written durably before the S3 response returns,
//     so an arrival is never lost to a crash;
//   - the rules, with the same patterns as the deployed ones (transformPattern, infra/);
//   - the pipeline's targets: the Lambdas' own handlers (pipeline/handler), reaching the
//     endpoint over HTTP with the same S3 client code as on AWS, and the ledger;
//   - the local notification sink (an outbox file, an optional webhook).
//
// The caller serves S3() on embedded.s3.listen, sends the gateway's own events to Bus(), and
// Closes it after the front ends stopped.
//
// # The S3 layer
//
// s3server keeps gofakes3 v1.2.0 and adds around it what that version lacks (aws-chunked
// bodies with chunk signatures, checksums, tagging, UploadPartCopy, conditional writes,
// multipart ETags, per-request state through a router built per request, status and ETag
// rewriting, CopyObject metadata). The maintained fork, github.com/rclone/gofakes3 (v0.0.12
// resolves here), passes a context.Context to every Backend call, which would retire the
// per-request router, the largest workaround. It was not adopted yet: the rest (SigV4 and
// chunk-signature verification, the synchronous change hook that makes events durable,
// conditional writes, the status rewriting) is ours with either library and would have to be
// ported and re-proven, a change of its own. What the S3 layer must do is pinned by s3server's
// contract test (the storage suite over HTTP), the AWS CLI test and the change tests, so that
// move is a swap under those tests.
package embedded
