// Package pipeline is the serverless half of Ferry: what happens to a file once it is in S3.
// Its packages turn S3 events into transformed outputs and notices (route, transform, handler,
// notify, bus), run as Lambdas on AWS (cmd/transform, cmd/notify) and inside the embedded
// default. It also owns what both halves need (strictyaml, datasize, event, and the test tools
// under testtool), because dependencies run one way: the gateway may import the pipeline,
// never the reverse, so a Lambda never drags the gateway in (imports_test.go).
package pipeline
