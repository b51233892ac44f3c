package app

import (
	"os"
	"testing"

	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// TestMain gives the gateways under test their S3 credentials the way production does, through
// the SDK's standard chain: every versitygw of this process shares them (s3test), so they are set
// once here and tests may run in parallel.
func TestMain(m *testing.M) {
	if err := os.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey); err != nil {
		panic(err)
	}
	if err := os.Setenv("AWS_SECRET_ACCESS_KEY", s3test.Secret()); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}
