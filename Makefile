# Ferry: `make run` starts the system on this machine, `make test` runs every test.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BUILDFLAGS := -trimpath -ldflags "$(LDFLAGS)"
VERSITYGW_VERSION := v1.8.0
# Go programs the tests and benchmarks drive, installed at pinned versions into the project's own
# tools folder (found there by pipeline/testtool), so nothing depends on what else is on the machine.
TOOLS_DIR := $(CURDIR)/.tools
TOOLS_BIN := $(TOOLS_DIR)/bin
export PATH := $(TOOLS_BIN):$(PATH)

.PHONY: build run test test-short bench bench-peers tools deps vet fmt clean lambdas

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

## tools: the Go programs the tests drive, at pinned versions, into .tools/bin (once per version)
tools: $(TOOLS_DIR)/versitygw@$(VERSITYGW_VERSION) $(TOOLS_DIR)/rclone@v1.76.0

$(TOOLS_DIR)/versitygw@$(VERSITYGW_VERSION):
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)
	@touch $@

$(TOOLS_DIR)/rclone@v1.76.0:
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/rclone/rclone@v1.76.0
	@touch $@

fmt:
	gofmt -w gateway pipeline infra

clean:
	rm -rf bin dist
