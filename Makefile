# Ferry: `make run` starts the system on this machine, `make test` runs every test.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BUILDFLAGS := -trimpath -ldflags "$(LDFLAGS)"
VERSITYGW_VERSION := v1.8.0
RCLONE_VERSION := v1.76.0
# Go programs the tests and benchmarks drive, installed at pinned versions into the project's own
# tools folder (found there by pipeline/testtool), so nothing depends on what else is on the machine.
TOOLS_DIR := $(CURDIR)/.tools
TOOLS_BIN := $(TOOLS_DIR)/bin
export PATH := $(TOOLS_BIN):$(PATH)

.PHONY: build run test test-short bench bench-peers tools deps vet fmt clean lambdas deploy validate-infra faults loadtest

## build: the one binary, bin/ferry (same flags as the Dockerfile)
build:
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -o bin/ferry ./gateway/cmd/ferry

## run: the whole system on this machine with the dev config: gateway + embedded S3 endpoint on
## ./data (see README)
run: build
	bin/ferry serve --config configs/dev.yaml

## test: vet + every test (real S3 server, real SSH/FTP clients). Installs what the tests need
## first (Go tools into .tools/bin; Debian clients with apt-get as root, otherwise it prints the
## command); a test whose program is still missing fails, it never skips.
test: tools deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 45m ./...

## test-short: a deliberate quick run that skips the tests needing external programs
test-short:
	$(GO) test -count=1 -short ./...

## faults: S3's faults injected between the gateway and versitygw (several hundred SFTP/FTP
## transfers, then SIGTERM with transfers in flight, S3 unreachable at start, the pipeline's
## faults and bounded transforms), printing what the clients saw and the counts. All run in
## `make test` too; this shows their figures.
faults: tools
	$(GO) test -count=1 -v -run 'TestS3Faults' ./gateway/loadtest/
	$(GO) test -count=1 -v -run 'TestSIGTERMDrains' ./gateway/cmd/ferry/
	$(GO) test -count=1 -v -run 'TestS3UnreachableAtStart' ./gateway/internal/app/
	$(GO) test -count=1 -v -run 'TestPipelineThroughFaults|TestHostileFilesAreRejectedWithinBounds' ./pipeline/handler/
	$(GO) test -count=1 -v -run 'TestBootstrapsThroughFaults' ./pipeline/cmd/transform/
	$(GO) test -count=1 -v -run 'TestHostileInputsAreBounded' ./pipeline/transform/

## loadtest: 200 concurrent SFTP and FTP sessions for 30s against bin/ferry's code with S3
## faults at a low rate (loopback only, about a minute); prints the figures. Also in `make test`.
loadtest: tools
	$(GO) test -count=1 -v -run 'TestLoad' -timeout 10m ./gateway/loadtest/

## deps: the Debian programs the tests drive (installed as root, otherwise the command is printed)
deps:
	@bash .ci/deps

## bench: throughput and memory against baselines measured in the same run
# Bench data in RAM when /dev/shm exists: disk writeback would add noise to the ratios.
BENCH_TMPDIR ?= $(or $(TMPDIR),$(if $(wildcard /dev/shm/.),/dev/shm,/tmp))
bench: build
	$(GO) test -run '^$$' -bench 'CSVToJSONL|Copy' -cpu 1 ./pipeline/transform/
	TMPDIR=$(BENCH_TMPDIR) $(GO) test -run '^$$' -bench '^Benchmark(SFTP|FTP|Embedded|Pipeline.*)$$' -benchtime 1x -timeout 60m ./gateway/bench/

## bench-peers: Ferry against rclone serve sftp|ftp (v1.76.0, from make tools) over one versitygw,
## with OpenSSH sftp and lftp, three interleaved runs of each workload, one table (not in make test;
## FERRY_BENCH_SIZE=64MiB for a quick run)
bench-peers: build tools deps
	TMPDIR=$(BENCH_TMPDIR) $(GO) test -run '^$$' -bench '^BenchmarkPeers$$' -benchtime 1x -timeout 120m ./gateway/bench/

## lambdas: the pipeline's Lambda functions, dist/<name>.zip each holding a linux/arm64 `bootstrap`
## (provided.al2023; -tags lambda.norpc drops the go1.x RPC, CGO_ENABLED=0 avoids glibc mismatch)
LAMBDAS := transform notify
lambdas:
	@for n in $(LAMBDAS); do \
		GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -trimpath -tags lambda.norpc -ldflags "-s -w" \
			-o dist/$$n/bootstrap ./pipeline/cmd/$$n || exit 1; \
		cp configs/pipeline.yaml dist/$$n/pipeline.yaml || exit 1; \
		rm -f dist/$$n.zip; (cd dist/$$n && zip -q -X ../$$n.zip bootstrap pipeline.yaml) || exit 1; \
		echo "dist/$$n.zip"; \
	done

## deploy: the whole system on AWS in one command (README, "Deploying to AWS"); never run by tests.
##   make deploy STACK=ferry BUCKET=acme-ferry-drop IMAGE=123456789012.dkr.ecr.eu-west-1.amazonaws.com/ferry:1.4.0 \
##     PARAMS="VpcId=vpc-0abc VpcCidr=10.0.0.0/16 LoadBalancerSubnetIds=subnet-1,subnet-2 TaskSubnetIds=subnet-3,subnet-4 \
##             HostKeysSecretArn=arn:... FtpsCertSecretArn=arn:... FtpsKeySecretArn=arn:... AlarmEmail=ops@example.com"
## Builds the Lambda packages, uploads them and the nested templates to ARTIFACTS (created if
## missing; default BUCKET-artifacts) with `aws cloudformation package`, then creates or updates
## stack STACK with `aws cloudformation deploy`. A new stack is deployed twice: first with no
## gateway task (Bootstrap=true), then, once an empty users file exists at USERS_KEY in the
## bucket that first deploy created, with its tasks. Credentials and region: the AWS CLI's usual.
ARTIFACTS ?= $(BUCKET)-artifacts
USERS_KEY ?= .ferry/users.yaml
CFN_DEPLOY = aws cloudformation deploy --template-file dist/ferry.packaged.yaml --stack-name $(STACK) \
	--capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM --no-fail-on-empty-changeset \
	--parameter-overrides BucketName=$(BUCKET) ImageUri=$(IMAGE) UsersFileKey=$(USERS_KEY) $(PARAMS)
deploy:
	@test -n "$(STACK)" && test -n "$(BUCKET)" && test -n "$(IMAGE)" || \
		{ echo 'usage: make deploy STACK=name BUCKET=bucket IMAGE=image [ARTIFACTS=bucket] [USERS_KEY=key] [PARAMS="Key=Value ..."]' >&2; exit 2; }
	$(MAKE) lambdas
	aws s3api head-bucket --bucket $(ARTIFACTS) 2>/dev/null || aws s3 mb s3://$(ARTIFACTS)
	aws cloudformation package --template-file infra/ferry.yaml --s3-bucket $(ARTIFACTS) --s3-prefix $(STACK) \
		--output-template-file dist/ferry.packaged.yaml
	aws cloudformation describe-stacks --stack-name $(STACK) >/dev/null 2>&1 || $(CFN_DEPLOY) Bootstrap=true
	aws s3api head-object --bucket $(BUCKET) --key $(USERS_KEY) >/dev/null 2>&1 || \
		{ printf 'users: []\n' | aws s3 cp - s3://$(BUCKET)/$(USERS_KEY); }
	$(CFN_DEPLOY) Bootstrap=false

## validate-infra: the offline proof of infra/ alone (no AWS account): cfn-lint on every template,
## the stacks deployed into moto_server, the rule patterns judged against the embedded default's
## real events, IAM against the code, the gateway's metric filters, the image's build.
validate-infra:
	$(GO) test -count=1 -timeout 10m ./infra/

## tools: the Go programs the tests drive, at pinned versions, into .tools/bin (once per version)
tools: $(TOOLS_DIR)/versitygw@$(VERSITYGW_VERSION) $(TOOLS_DIR)/rclone@$(RCLONE_VERSION)

$(TOOLS_DIR)/versitygw@$(VERSITYGW_VERSION):
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)
	@touch $@

$(TOOLS_DIR)/rclone@$(RCLONE_VERSION):
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/rclone/rclone@$(RCLONE_VERSION)
	@touch $@

fmt:
	gofmt -w gateway pipeline infra

clean:
	rm -rf bin dist
