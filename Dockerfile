# The gateway image for ECS Fargate (infra/gateway.yaml) and Kubernetes: the same static binary as
# `make build`, on distroless static, run as a non-root user, with the AWS config baked in.
#   docker buildx build --platform linux/arm64 --build-arg VERSION=$(git describe --tags) -t REGISTRY/ferry:TAG .
# (ARM64 for Graviton Fargate, the template's default CpuArchitecture; linux/amd64 for X86_64.)
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ferry ./gateway/cmd/ferry

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ferry /usr/local/bin/ferry
# The production config for AWS: every value comes from the environment the task definition
# sets (FERRY_BUCKET, FERRY_USERS_FILE, ...) and the secrets ECS injects (FERRY_HOST_KEYS, ...).
COPY configs/ferry.aws.yaml /etc/ferry/ferry.yaml
# SFTP; FTP (behind the NLB, FTP control, implicit FTPS and every passive port arrive here, told
# apart by the PROXY header's destination port); health; metrics (inside the VPC only).
EXPOSE 2222 2121 8080 9100
# Health: GET /readyz on 8080 (200 when S3 answers, users are loaded and the task is not
# draining; the NLB's target groups check it) and GET /healthz (liveness). The static image
# has no shell or HTTP client for a Docker HEALTHCHECK, and ECS does not use one: none is set.
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["serve", "--config", "/etc/ferry/ferry.yaml"]
