# committer: build, test and run targets. `make help` lists them.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TOOLS := $(CURDIR)/bin/tools
export GOBIN := $(TOOLS)

# Pinned code-generation tools, installed from the Go module proxy.
BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPCURL_VERSION := v1.9.4

# Packages whose tests are slow or start many processes get a longer timeout.
TEST_TIMEOUT ?= 20m
TEST_FLAGS ?= -race -count=1 -timeout $(TEST_TIMEOUT)

.PHONY: help build test lint proto proto-check run clean tools docs image rules

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

# The build's version and revision, linked into the binary (committer version,
# committer_build_info). Builds here run with -buildvcs=false, so git is asked
# directly; without git (or outside a checkout) both stay empty and the binary
# falls back to what the Go toolchain recorded, or "unknown".
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
BUILDINFO := github.com/hacommit/committer/metrics
LDFLAGS := -X '$(BUILDINFO).linkedVersion=$(VERSION)' -X '$(BUILDINFO).linkedRevision=$(REVISION)'

build: ## build bin/committer
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/committer ./cmd/committer

# deploy/ is a module of its own, so that the Kubernetes, compose and
# Prometheus libraries its tests use stay out of the server's module graph.
# Its tests run the server as separate processes and are little concurrent
# code themselves; without the race detector they skip building those
# libraries instrumented (minutes on two cores).
DEPLOY_TEST_FLAGS ?= -count=1 -timeout $(TEST_TIMEOUT)
test: lint ## run every test (race detector on, real PostgreSQL), the deploy/ artifacts' included
	$(GO) test $(TEST_FLAGS) ./...
	cd deploy && GOTOOLCHAIN=local $(GO) test $(DEPLOY_TEST_FLAGS) ./...

lint: ## go vet and gofmt
	$(GO) vet ./...
	cd deploy && GOTOOLCHAIN=local $(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

rules: ## regenerate deploy/kubernetes/base/prometheusrule.yaml from deploy/observability/alerts.yaml
	cd deploy && GOTOOLCHAIN=local $(GO) run ./observability/genrule

docs: ## regenerate docs/flags.md from the CLI itself
	$(GO) run ./cmd/committer docs > docs/flags.md

# The container image from a binary built here (no base image to pull):
# deploy/image/Containerfile.prebuilt over a context of the static binary
# and the host's CA roots. deploy/image/Dockerfile builds the same image
# from source where a Go base image can be pulled.
IMAGE ?= committer:latest
IMAGE_CONTEXT := $(BIN)/image-context
image: ## build the container image $(IMAGE) with podman or docker (static binary built on the host)
	@builder=$$(command -v podman || { docker info >/dev/null 2>&1 && command -v docker; } || true); \
	if [ -z "$$builder" ]; then echo "make image: no image builder found (install podman, or run a docker engine)" >&2; exit 1; fi; \
	rm -rf $(IMAGE_CONTEXT) && mkdir -p $(IMAGE_CONTEXT)/data && \
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(IMAGE_CONTEXT)/committer ./cmd/committer && \
	cp /etc/ssl/certs/ca-certificates.crt $(IMAGE_CONTEXT)/ && \
	$$builder build -f deploy/image/Containerfile.prebuilt -t $(IMAGE) $(IMAGE_CONTEXT)

run: build ## run a local 3-replica cluster on the embedded backend
	$(BIN)/committer dev

# The Jepsen campaign needs root (network namespaces, nftables), iproute2,
# nftables and PostgreSQL. JEPSEN_TIME sets the budget of the regular runs,
# JEPSEN_OUT where they go; see docs/jepsen.md.
.PHONY: jepsen
jepsen: build ## Jepsen campaign: 10 minutes of runs on 3 and 5 replicas under every nemesis, then the canaries (root)
	$(GO) build -o $(BIN)/jepsen ./cmd/jepsen
	$(BIN)/jepsen campaign --time $${JEPSEN_TIME:-10m} --nodes 3,5 --nemesis all \
		--committer-bin $(BIN)/committer --out $${JEPSEN_OUT:-jepsen-out/campaign-$$(date -u +%Y%m%dT%H%M%S)}

# Each tool is installed once per pinned version; the stamp file records which.
TOOL_STAMPS := $(TOOLS)/.buf-$(BUF_VERSION) $(TOOLS)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION) \
	$(TOOLS)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION) $(TOOLS)/.grpcurl-$(GRPCURL_VERSION)

tools: $(TOOL_STAMPS) ## install pinned buf, protoc plugins and grpcurl into bin/tools

$(TOOLS)/.buf-$(BUF_VERSION):
	$(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@touch $@
$(TOOLS)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION):
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@touch $@
$(TOOLS)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION):
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	@touch $@
$(TOOLS)/.grpcurl-$(GRPCURL_VERSION):
	$(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	@touch $@

# buf runs the plugins from bin/tools (local plugins only, no remote ones).
BUF := PATH="$(TOOLS):$$PATH" $(TOOLS)/buf

proto: tools ## regenerate the Go code of rpc/proto into rpc/consensuspb, rpc/adminpb and rpc/peerpb
	$(BUF) build
	$(BUF) generate

proto-check: tools ## fail if the committed generated code differs from what `make proto` writes
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(BUF) generate -o "$$tmp" || exit 1; \
	committed=$$(find rpc -name '*.pb.go' | sort); \
	fresh=$$(cd "$$tmp" && find rpc -name '*.pb.go' | sort); \
	if [ "$$committed" != "$$fresh" ]; then \
		echo "generated files differ from the committed ones; run make proto"; \
		diff <(echo "$$committed") <(echo "$$fresh"); exit 1; fi; \
	for f in $$fresh; do \
		cmp -s "$$f" "$$tmp/$$f" || { echo "$$f is stale; run make proto"; diff -u "$$f" "$$tmp/$$f" | head -40; exit 1; }; \
	done; \
	echo "generated code is up to date"

clean:
	rm -rf $(BIN) .committer-dev
