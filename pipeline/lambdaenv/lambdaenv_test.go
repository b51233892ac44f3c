package lambdaenv

import (
	"context"
	"strings"
	"testing"
)

func TestRoutes(t *testing.T) {
	env := &Env{} // no S3 client: none of these cases reaches S3
	for _, c := range []struct {
		name, routes, def string
		wantRoutes        bool
		wantErr           string
	}{
		{"unset, no default: none", "", "", false, ""},
		{"packaged default", "", "../../configs/pipeline.yaml", true, ""},
		{"ROUTES wins over the default", "../../configs/pipeline.yaml", "/nonexistent.yaml", true, ""},
		{"missing file", "/nonexistent/pipeline.yaml", "", false, "nonexistent"},
		{"s3 URL without a key", "s3://bucket-only", "", false, "want s3://bucket/key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("ROUTES", c.routes)
			r, err := env.Routes(context.Background(), c.def)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (r != nil) != c.wantRoutes || (r != nil && len(r.Routes) == 0) {
				t.Fatalf("routes = %v, want loaded: %v", r, c.wantRoutes)
			}
		})
	}
}
