# imagegate — build, run and test. Tool versions are pinned here; heavy test
# tools are built once from the Go module proxy into $(TOOLS_DIR), outside the
# repository, and skipped when already built.
export GOTOOLCHAIN := local

DISTRIBUTION_VERSION ?= v3.1.2
COSIGN_V3_VERSION ?= v3.1.3
COSIGN_V2_VERSION ?= v2.6.5
GOLANGCI_LINT_VERSION ?= v2.6.2
OPA_VERSION ?= v1.22.2
BENCHSTAT_VERSION ?= v0.0.0-20260908200009-22c9c6c9d4da
# Control plane for `make e2e`, built from the tools module test/tools (its
# go.mod must require exactly these; e2e-tools checks).
KUBERNETES_VERSION ?= v1.36.3
ETCD_VERSION ?= v3.6.8
# Gatekeeper manager for the Gatekeeper scenarios of `make e2e` (go install:
# no replace directives; the suite installs the CRDs of the same version).
GATEKEEPER_VERSION ?= v3.23.1

TOOLS_DIR ?= $(HOME)/.cache/imagegate/tools
TOOLS_BIN := $(TOOLS_DIR)/bin
export IMAGEGATE_TOOLS := $(TOOLS_DIR)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/imagegate/imagegate/server.Version=$(VERSION)
DEV_DIR := .dev

.PHONY: all build run test test-short fuzz-seeds fmt-check vet tools lint tidy e2e e2e-tools clean test-rego bench

all: build

build:
	go build -trimpath -ldflags '$(LDFLAGS)' -o bin/imagegate ./cmd/imagegate

# run: self-signed dev TLS in .dev/certs (made once), then serve the dev config
# on https://127.0.0.1:8443. The CA bundle to paste into a Gatekeeper Provider
# is printed first.
run: build
	./bin/imagegate certs --dir $(DEV_DIR)/certs
	./bin/imagegate serve --config examples/config/dev.yaml

# test: everything `go test` reaches, with the race detector: unit tests, the
# in-process registry and HTTPS server tests, the real distribution registry
# process test and the fuzz seed corpora.
test: tools fmt-check vet test-rego verify-generated
	go test -race -count=1 ./...

test-short:
	go test -short ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	go vet ./...

# tools: the distribution registry and both cosign majors (signature tests
# sign with real cosign: providers/signature/signaturetest). File targets, so
# make skips whatever is already built; delete a binary to rebuild it.
tools: $(TOOLS_BIN)/registry $(TOOLS_DIR)/cosign-v3/cosign $(TOOLS_DIR)/cosign-v2/cosign

$(TOOLS_BIN)/registry:
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) go install github.com/distribution/distribution/v3/cmd/registry@$(DISTRIBUTION_VERSION)

$(TOOLS_DIR)/cosign-v3/cosign:
	@mkdir -p $(TOOLS_DIR)/cosign-v3
	GOBIN=$(TOOLS_DIR)/cosign-v3 go install github.com/sigstore/cosign/v3/cmd/cosign@$(COSIGN_V3_VERSION)

$(TOOLS_DIR)/cosign-v2/cosign:
	@mkdir -p $(TOOLS_DIR)/cosign-v2
	GOBIN=$(TOOLS_DIR)/cosign-v2 go install github.com/sigstore/cosign/v2/cmd/cosign@$(COSIGN_V2_VERSION)

$(TOOLS_BIN)/golangci-lint:
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

$(TOOLS_BIN)/benchstat:
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) go install golang.org/x/perf/cmd/benchstat@$(BENCHSTAT_VERSION)

$(TOOLS_BIN)/opa:
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) go install github.com/open-policy-agent/opa@$(OPA_VERSION)

# test-rego: the bundled Rego rules: formatted, strictly type-checked and
# tested against rego/capabilities.json (no http.send, net.lookup_ip_addr or
# opa.runtime; external_data and imagegate.facts declared), with at least 90 %
# coverage in every package (rego/internal/covercheck; packages are directories).
REGO_COVERAGE_MIN ?= 90
test-rego: $(TOOLS_BIN)/opa
	$(TOOLS_BIN)/opa fmt --list --fail rego/
	$(TOOLS_BIN)/opa check --strict --capabilities rego/capabilities.json rego/
	$(TOOLS_BIN)/opa test --capabilities rego/capabilities.json rego/
	@mkdir -p $(DEV_DIR)
	$(TOOLS_BIN)/opa test --capabilities rego/capabilities.json --coverage rego/ > $(DEV_DIR)/rego-coverage.json
	go run ./rego/internal/covercheck -min $(REGO_COVERAGE_MIN) $(DEV_DIR)/rego-coverage.json

lint: $(TOOLS_BIN)/golangci-lint
	$(TOOLS_BIN)/golangci-lint run ./...

tidy:
	go mod tidy

# fuzz: every Go fuzz target (func Fuzz* in a _test.go file) for FUZZTIME
# each, one after another. `go test` (make test) already runs every target's
# seed corpus (testdata/fuzz/<Name> and f.Add seeds); a failure found here
# is written to testdata/fuzz/<Name>/ and becomes a seed once committed.
# One target: make fuzz FUZZ_RUN=FuzzDescribe
FUZZTIME ?= 10s
FUZZ_RUN ?= .
.PHONY: fuzz
fuzz:
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/' | grep -E '$(FUZZ_RUN)'); do \
	    echo "== $$dir $$f ($(FUZZTIME))"; go test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$dir; \
	  done; \
	done

# bench: performance (issue #7; method and figures in BENCHMARKS.md). Not
# part of `make test`. First the Go micro-benchmarks of the hot paths
# (benchstat-comparable: $(BENCH_OUT)/micro.txt, summarised by benchstat in
# micro-benchstat.txt; compare two runs with `benchstat old.txt new.txt`),
# then test/bench (build tag bench): imagegate, the baseline server and the
# load generator as separate processes on loopback ($(BENCH_OUT)/load.md,
# load.json). BENCH_DURATION (default 4s) is each load run's measured time,
# BENCH_WORKERS (default 1,2,4,8) the worker counts swept to find saturation.
# Then TestCosign (cosign v3/v2 verify against imagegate facts and the server,
# same images: cosign.md) and TestMemory (RSS with 100,000 cached digests and
# the cache bound: memory.md), ~20 min together.
BENCH_OUT ?= $(CURDIR)/$(DEV_DIR)/bench
BENCH_COUNT ?= 6
BENCH_PKGS := ./providers/registry/ ./providers/lookup/ ./server/ ./rego/
bench: $(TOOLS_BIN)/benchstat $(TOOLS_DIR)/cosign-v3/cosign $(TOOLS_DIR)/cosign-v2/cosign
	@mkdir -p $(BENCH_OUT)
	go vet -tags bench ./test/bench/...
	@{ echo "# nproc $$(nproc); $$(grep -m1 'model name' /proc/cpuinfo); loadavg $$(cat /proc/loadavg)"; \
	  go test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) $(BENCH_PKGS); } > $(BENCH_OUT)/micro.txt; \
	  st=$$?; cat $(BENCH_OUT)/micro.txt; exit $$st
	$(TOOLS_BIN)/benchstat $(BENCH_OUT)/micro.txt > $(BENCH_OUT)/micro-benchstat.txt && cat $(BENCH_OUT)/micro-benchstat.txt
	BENCH_OUT=$(BENCH_OUT) go test -tags bench -count=1 -timeout 30m -v -run TestLoad ./test/bench/
	BENCH_OUT=$(BENCH_OUT) go test -tags bench -count=1 -timeout 5m -v -run TestCold ./test/bench/
	BENCH_OUT=$(BENCH_OUT) go test -tags bench -count=1 -timeout 30m -v -run 'TestCosign|TestMemory' ./test/bench/
	@echo "results: $(BENCH_OUT)/micro.txt, micro-benchstat.txt, load.md, load.json, cold.md, cosign.md, memory.md"

# e2e: the control-plane suite (test/e2e, build tag e2e, so `go test ./...`
# never runs it): etcd + kube-apiserver with the ImagePolicyWebhook configured
# by examples/imagepolicywebhook (TestImagePolicyWebhook) or with the
# Gatekeeper manager out of cluster and the gatekeeper/ templates, Providers
# and Assigns (TestGatekeeper), two distribution registries, real cosign
# signatures, imagegate built from this tree. Logs, rendered configs and the
# apiserver audit log are kept in $(E2E_ARTIFACTS)/<test>. One scenario:
# make e2e E2E_RUN='TestImagePolicyWebhook/break-glass'
# (or E2E_RUN='TestGatekeeper/mutation').
E2E_ARTIFACTS ?= $(CURDIR)/$(DEV_DIR)/e2e
E2E_TIMEOUT ?= 20m
E2E_RUN ?= .
e2e: tools e2e-tools
	@out=$$(gofmt -l test); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet -tags e2e ./test/e2e/...
	E2E_ARTIFACTS=$(E2E_ARTIFACTS) GATEKEEPER_VERSION=$(GATEKEEPER_VERSION) go test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -v -run '$(E2E_RUN)' ./test/e2e/...

# e2e-tools: kube-apiserver and etcd from the tools module test/tools, and
# the Gatekeeper manager (go install), into $(TOOLS_BIN). File targets: a
# built binary is skipped (a warm run starts at once); delete it to rebuild,
# e.g. after changing the versions above. Cold, kube-apiserver takes ~12 min
# on 2 shared cores, etcd ~1.5 min, Gatekeeper ~5.5 min.
TOOLS_MODULE := test/tools
KUBE_MINOR := $(word 2,$(subst ., ,$(KUBERNETES_VERSION)))
KUBE_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(KUBERNETES_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=$(KUBE_MINOR) \
	-X k8s.io/component-base/version.gitTreeState=clean
e2e-tools: $(TOOLS_BIN)/kube-apiserver $(TOOLS_BIN)/etcd $(TOOLS_BIN)/gatekeeper

# tools-module-pins MODULE VERSION: fail unless test/tools/go.mod requires it.
define tools-module-pins
	@v=$$(cd $(TOOLS_MODULE) && go list -m -f '{{.Version}}' $(1)) && [ "$$v" = "$(2)" ] || \
	{ echo "test/tools/go.mod requires $(1) $$v, the Makefile pins $(2): (cd $(TOOLS_MODULE) && go get $(1)@$(2) && go mod tidy)"; exit 1; }
endef

$(TOOLS_BIN)/kube-apiserver:
	$(call tools-module-pins,k8s.io/kubernetes,$(KUBERNETES_VERSION))
	@mkdir -p $(TOOLS_BIN)
	cd $(TOOLS_MODULE) && go build -ldflags '$(KUBE_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kube-apiserver

$(TOOLS_BIN)/etcd:
	$(call tools-module-pins,go.etcd.io/etcd/server/v3,$(ETCD_VERSION))
	@mkdir -p $(TOOLS_BIN)
	cd $(TOOLS_MODULE) && go build -o $@ go.etcd.io/etcd/server/v3

# The Gatekeeper manager: `go install` works (no replace directives); cold
# ~5.5 min on 2 shared cores (with kube-apiserver's packages already in the
# build cache), ~12 s warm. test/e2e checks its version with `go version -m`.
$(TOOLS_BIN)/gatekeeper:
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) go install github.com/open-policy-agent/gatekeeper/v3@$(GATEKEEPER_VERSION)

clean:
	rm -rf bin

# generate: the Gatekeeper ConstraintTemplates (gatekeeper/library/*/template.yaml)
# from rego/lib, gatekeeper/lib and each template's constraint.tmpl and
# src.rego. verify-generated fails when the checked-in files differ.
.PHONY: generate verify-generated
generate:
	go run ./gatekeeper/internal/gen

verify-generated: generate
	git diff --exit-code gatekeeper/
