# promenroll — run `make help` for the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

GO        ?= go
BIN       := $(CURDIR)/bin
K8S_BIN   := $(BIN)/k8s
PROMTOOL  := $(BIN)/promtool
PROMETHEUS := $(BIN)/prometheus
OPERATOR  := $(BIN)/prometheus-operator
VERDICTS  := $(BIN)/operator-verdicts
OPERATOR_ADMISSION := $(BIN)/operator-admission
HELM_DOCS := $(BIN)/helm-docs
GOLANGCI_LINT := $(BIN)/golangci-lint
# The Go modules: the product, the tests, the chart's tests, the image
# assembly.
MODULES   := . test test/chart test/tools/image
IMAGE_TOOL := $(BIN)/image
IMG       ?= promenroll:dev
# The pod sandbox image containerd v2.4 pins; the node tests import a
# local one under its name (nothing can be pulled).
PAUSE_IMAGE := registry.k8s.io/pause:3.10.2
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# Tests: the race detector always; bounded so a hang fails instead of stalling CI.
TEST_FLAGS ?= -race -count=1 -timeout=20m
ARGS      ?=
FUZZTIME  ?= 30s
# Minimizing each new coverage-expanding input is bounded in runs: by
# default it may take 60 s, which stalls a 20 s run and fails it with
# "context deadline exceeded" when the run ends mid-minimization.
FUZZMINIMIZE ?= 100x

export KUBEBUILDER_ASSETS := $(K8S_BIN)

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z0-9_.\/-]+:.*## /{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/promenroll.
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN)/promenroll ./cmd/promenroll

.PHONY: test
test: test-bins node-bins image $(PROMTOOL) $(VERDICTS) ## Run every test: unit, promtool agreement, end-to-end (control plane, Prometheus Operator, Prometheus), the Helm chart, the image assembly.
	$(GO) test $(TEST_FLAGS) ./...
	cd test && $(GO) test $(TEST_FLAGS) ./...
	cd test/chart && $(GO) test $(TEST_FLAGS) ./...
	cd test/tools/image && $(GO) test $(TEST_FLAGS) ./...

.PHONY: test-chart
test-chart: test-bins ## Test the Helm chart with Helm's SDK: lint, renders, safety, agreement with deploy/, install with self-managed TLS.
	cd test/chart && $(GO) test $(TEST_FLAGS) -v ./...

.PHONY: test-unit
test-unit: ## Run the unit tests only (no control plane).
	$(GO) test $(TEST_FLAGS) ./policy/... ./internal/... ./webhook/... ./cmd/...

.PHONY: test-e2e
test-e2e: test-bins ## Run the end-to-end suite against a local kube-apiserver.
	cd test && $(GO) test $(TEST_FLAGS) -v ./e2e/...

.PHONY: node-bins
node-bins: ## Build the container runtime of the node tests (bin/node: containerd, its shim, ctr, runc, the CNI plugins; installs libseccomp-dev as root when missing).
	@test/tools/node/build.sh $(BIN)/node

.PHONY: test-node
test-node: test-bins node-bins image ## The real-node tests only (root): the images on containerd, the chart under a real kubelet, a killed run's cleanup.
	cd test && $(GO) test $(TEST_FLAGS) -v ./node/...
	cd test/chart && $(GO) test $(TEST_FLAGS) -v -run TestChartOnARealNode .

.PHONY: test-bins
test-bins: $(PROMETHEUS) $(OPERATOR) ## Build the control plane and the node's kubelet and kube-scheduler (bin/k8s), Prometheus and the Prometheus Operator (only when their pinned versions change).
	@test/tools/build.sh $(K8S_BIN)

$(PROMETHEUS): test/tools/promtool/go.mod test/tools/promtool/go.sum
	@echo "prometheus: building from test/tools/promtool (pinned Prometheus version)"
	cd test/tools/promtool && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(PROMETHEUS) github.com/prometheus/prometheus/cmd/prometheus

$(OPERATOR): test/tools/operator/go.mod test/tools/operator/go.sum
	@echo "prometheus-operator: building from test/tools/operator (the version the e2e CRDs come from)"
	cd test/tools/operator && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(OPERATOR) github.com/prometheus-operator/prometheus-operator/cmd/operator

# The operator's own verdict on monitors, for policy's agreement test.
$(VERDICTS): test/tools/operator/go.mod test/tools/operator/go.sum test/tools/operator/verdicts/main.go
	cd test/tools/operator && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(VERDICTS) ./verdicts

$(PROMTOOL): test/tools/promtool/go.mod test/tools/promtool/go.sum
	@echo "promtool: building from test/tools/promtool (pinned Prometheus version)"
	cd test/tools/promtool && CGO_ENABLED=0 $(GO) build -trimpath -o $(PROMTOOL) github.com/prometheus/prometheus/cmd/promtool

# The CRDs `promenroll check` validates against, from the operator version
# the e2e control plane runs (test/cluster.PrometheusOperatorVersion).
CRD_VERSION := v0.94.1
CRD_KINDS   := servicemonitors podmonitors probes scrapeconfigs prometheusrules alertmanagerconfigs
.PHONY: bench-native
bench-native: test-bins ## Deployment creates through the local kube-apiserver: no enrollment, the webhook engine, the native engine, a hand-written MutatingAdmissionPolicy; 1 and 8 clients, p50 and p99 (about 1 minute).
	cd test && PROMENROLL_BENCH_NATIVE=1 $(GO) test -count=1 -timeout 20m -run TestNativeLatencySideBySide -v ./e2e/ 2>&1 | grep -A6 'Deployment CREATE'

.PHONY: native
native: ## Regenerate the native policies kustomize and the chart ship (promenroll compile of deploy/base's and the chart's default policy).
	cd test && $(GO) test -count=1 -run TestNativeEnrollmentIsCurrent ./deploy -update
	cd test/chart && $(GO) test -count=1 -run TestNativePoliciesAreCurrent . -update

.PHONY: crds
crds: ## Regenerate cmd/promenroll/crds (the Prometheus Operator CRDs check embeds) from the operator's module.
	@dir=$$(cd /tmp && $(GO) mod download -json github.com/prometheus-operator/prometheus-operator@$(CRD_VERSION) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'); \
	test -n "$$dir" || { echo "cannot download prometheus-operator $(CRD_VERSION)"; exit 1; }; \
	for k in $(CRD_KINDS); do gzip -9 -n -c "$$dir/example/prometheus-operator-crd/monitoring.coreos.com_$$k.yaml" > cmd/promenroll/crds/$$k.yaml.gz; done; \
	cp "$$dir/LICENSE" cmd/promenroll/crds/LICENSE; \
	echo "cmd/promenroll/crds: $(CRD_KINDS) from prometheus-operator $(CRD_VERSION)"

.PHONY: promtool
promtool: $(PROMTOOL) ## Build bin/promtool from the pinned Prometheus module.

# prometheus-operator's own admission webhook, for the side-by-side figures.
$(OPERATOR_ADMISSION): test/tools/operator/go.mod test/tools/operator/go.sum test/tools/operator/admission/main.go
	cd test/tools/operator && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(OPERATOR_ADMISSION) ./admission

.PHONY: bench
bench: $(OPERATOR_ADMISSION) ## Go benchmarks; the load harness beside a no-op webhook and prometheus-operator's webhook; server CPU per request pinned to one core, open-loop at 1000 req/s; memory; overload; report in bin/bench-report.txt.
	@mkdir -p $(BIN)
	set -o pipefail; { $(GO) test -run '^$$' -bench . -benchmem -count=1 ./policy/... ./internal/... ./webhook/... && \
	  (cd test && $(GO) run ./load -n 5000 -c 1 -operator $(OPERATOR_ADMISSION)) && \
	  (cd test && $(GO) build -o $(BIN)/load ./load) && \
	  taskset -c 1 $(BIN)/load -pinned -n 5000 -c 8 -rate 1000 && \
	  taskset -c 1 $(BIN)/load -memory && \
	  taskset -c 1 $(BIN)/load -overload -overload-for $(OVERLOAD_FOR); } 2>&1 | tee $(BIN)/bench-report.txt

OVERLOAD_FOR ?= 60s
.PHONY: bench-overload
bench-overload: ## Overload: 512 KiB rule validations at twice a pinned server's capacity for OVERLOAD_FOR (60s) beside Deployment CREATEs; fails if a target is missed (about 90 s).
	cd test && $(GO) build -o $(BIN)/load ./load
	taskset -c 1 $(BIN)/load -overload -overload-for $(OVERLOAD_FOR)

.PHONY: bench-memory
bench-memory: ## Memory: four concurrent 1.4 MiB rule validations, peak RSS against deploy/'s memory limit; fails if over it (about 10 s).
	cd test && $(GO) build -o $(BIN)/load ./load
	taskset -c 1 $(BIN)/load -memory

.PHONY: fuzz
fuzz: ## Fuzz the decoders and validators (policy, rule gate, monitor gate, AlertmanagerConfig gate, /mutate, native policies against the webhook, Prometheus answers), FUZZTIME (30s) each.
	$(GO) test -run '^$$' -fuzz FuzzParsePolicy -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./policy
	$(GO) test -run '^$$' -fuzz FuzzCheckPrometheusRule -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./policy
	$(GO) test -run '^$$' -fuzz FuzzCheckMonitor -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./policy
	$(GO) test -run '^$$' -fuzz FuzzAlertmanagerConfigGate -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./policy
	$(GO) test -run '^$$' -fuzz FuzzMutate -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./webhook
	cd test && $(GO) test -run '^$$' -fuzz FuzzNativeAgreesWithTheWebhook -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./native
	$(GO) test -run '^$$' -fuzz FuzzDecodeTargets -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/promapi
	$(GO) test -run '^$$' -fuzz FuzzDecodeRules -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/promapi

.PHONY: hygiene
hygiene: ## Fail on tracked files over 1 MiB outside testdata or compiled binaries.
	@test/tools/hygiene.sh

.PHONY: lint
lint: hygiene $(GOLANGCI_LINT) $(HELM_DOCS) ## hygiene, gofmt, go vet and golangci-lint in every module, and the chart README current.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@for m in $(MODULES); do echo "go vet, golangci-lint: $$m"; (cd $$m && $(GO) vet ./... && $(GOLANGCI_LINT) run --config $(CURDIR)/.golangci.yml ./...) || exit 1; done
	@$(HELM_DOCS) $(HELM_DOCS_FLAGS) --dry-run 2>/dev/null | diff -u charts/promenroll/README.md - || { echo "charts/promenroll/README.md is not what helm-docs writes from values.yaml: run make chart-docs"; exit 1; }

HELM_DOCS_FLAGS := --chart-search-root charts --sort-values-order file --skip-version-footer
.PHONY: chart-docs
chart-docs: $(HELM_DOCS) ## Write charts/promenroll/README.md from values.yaml (helm-docs).
	$(HELM_DOCS) $(HELM_DOCS_FLAGS)

$(HELM_DOCS): test/tools/helmdocs/go.mod test/tools/helmdocs/go.sum
	cd test/tools/helmdocs && CGO_ENABLED=0 $(GO) build -trimpath -o $(HELM_DOCS) github.com/norwoodj/helm-docs/cmd/helm-docs

$(GOLANGCI_LINT): test/tools/lint/go.mod test/tools/lint/go.sum
	cd test/tools/lint && CGO_ENABLED=0 $(GO) build -trimpath -o $(GOLANGCI_LINT) github.com/golangci/golangci-lint/v2/cmd/golangci-lint

.PHONY: demo
demo: test-bins build ## Run promenroll against a local control plane and show what it does (ARGS=--once to exit).
	cd test && $(GO) run ./demo $(ARGS)

.PHONY: deploy
deploy: ## Install into the current kubectl context (needs cert-manager): kubectl apply -k deploy/cert-manager.
	kubectl apply -k deploy/cert-manager

$(IMAGE_TOOL): test/tools/image/go.mod test/tools/image/go.sum $(wildcard test/tools/image/*.go)
	cd test/tools/image && CGO_ENABLED=0 $(GO) build -trimpath -o $(IMAGE_TOOL) .

.PHONY: image
image: $(IMAGE_TOOL) ## Assemble the promenroll image (the Dockerfile's final stage), the test workload's and the node's pause image as OCI archives in bin/, with no Docker engine or registry (ctr images import reads them).
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN)/image-root/promenroll ./cmd/promenroll
	$(IMAGE_TOOL) --dockerfile Dockerfile --binary $(BIN)/image-root/promenroll --name docker.io/promenroll/promenroll:$(VERSION) --out $(BIN)/promenroll-image.tar
	cd test/tools/image && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/image-root/workload ./workload
	$(IMAGE_TOOL) --binary $(BIN)/image-root/workload --path /workload --name docker.io/promenroll/workload:test --out $(BIN)/workload-image.tar
	cd test/tools/image && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/image-root/pause ./pause
	$(IMAGE_TOOL) --binary $(BIN)/image-root/pause --path /pause --user 65535:65535 --name $(PAUSE_IMAGE) --out $(BIN)/pause-image.tar

.PHONY: docker-build
docker-build: ## Build the container image IMG (needs a Docker engine).
	docker build --build-arg VERSION=$(VERSION) -t $(IMG) .

.PHONY: clean
clean: ## Remove bin/ (control-plane binaries included).
	rm -rf $(BIN)

.PHONY: load
load: ## Load-test the /mutate and /validate handlers over HTTPS on 127.0.0.1 (bounded: N=20000 C=8).
	cd test && $(GO) run ./load -n $(or $(N),20000) -c $(or $(C),8)
