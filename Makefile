# mcpbroker — `make` (or `make help`) lists the targets.

GO       ?= go
FUZZTIME ?= 10s
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
BIN      := bin/mcpbroker
CONFIG   := testdata/quickstart.yaml
# make soak: calls per second over all replicas, how long, and the bound
# of the whole run (build and stop included).
SOAK_RATE     ?= 200
SOAK_DURATION ?= 10m
SOAK_TIMEOUT  ?= 30m

# Node 22 (node_modules/node/bin/node) and the npm packages the tests use;
# installed by .ci/setup.
export MCPBROKER_NODE_BIN     := $(CURDIR)/testdata/node/node_modules/node/bin
export MCPBROKER_NODE_MODULES := $(CURDIR)/testdata/node/node_modules

.DEFAULT_GOAL := help
.PHONY: help build run setup test bench soak fuzz lint check clean image

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/mcpbroker
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/mcpbroker

run: build ## Run the sample upstream and the broker with testdata/quickstart.yaml
	MCPBROKER_BIN=$(BIN) QUICKSTART_CONFIG=$(CONFIG) .ci/quickstart

setup: ## Install test dependencies (npm packages with Node 22, redis-server)
	@.ci/setup

test: setup ## Run go vet, all tests, and the Rego policy tests
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 14m ./...
	@if [ -n "$$(find policies -name '*.rego' -print -quit 2>/dev/null)" ]; then \
		echo "$(GO) run ./cmd/mcpbroker policy test policies/"; \
		$(GO) run ./cmd/mcpbroker policy test policies/; \
	else \
		echo "test: no .rego files in policies/, skipping policy tests"; \
	fi

bench: setup ## Run the data-path benchmarks and print the report table
	@mkdir -p bin
	$(GO) test -run '^$$' -bench 'BenchmarkDataPath|BenchmarkHopCPU|BenchmarkToolsList' -benchmem -benchtime 3s -count 1 ./broker/bench/ | tee bin/bench.out
	$(GO) test -run '^$$' -bench 'BenchmarkDecide' -benchmem -count 1 ./opa/ | tee -a bin/bench.out
	$(GO) test -run '^$$' -bench BenchmarkMint -benchmem -count 1 ./exchange/ | tee -a bin/bench.out
	$(GO) run ./broker/bench/report < bin/bench.out

soak: setup ## Three replicas sharing Redis under SOAK_RATE calls/s for SOAK_DURATION; RSS and goroutines every minute
	MCPBROKER_SOAK=1 SOAK_RATE=$(SOAK_RATE) SOAK_DURATION=$(SOAK_DURATION) \
		$(GO) test -count=1 -v -run '^TestSoak$$' -timeout $(SOAK_TIMEOUT) ./broker/bench/soak/

image: ## Build the container image mcpbroker:$(VERSION) (needs docker)
	@command -v docker >/dev/null 2>&1 || { echo "make image: docker is not installed" >&2; exit 1; }
	docker build --build-arg VERSION=$(VERSION) -t mcpbroker:$(VERSION) .

fuzz: ## Run every Fuzz target for FUZZTIME each (default 10s)
	@set -e; n=0; \
	for pkg in $$($(GO) list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...); do \
		list=$$($(GO) test -list '^Fuzz' $$pkg); \
		for fn in $$(echo "$$list" | grep '^Fuzz'); do \
			echo "fuzz: $$pkg $$fn ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; \
			n=$$((n + 1)); \
		done; \
	done; \
	echo "fuzz: ran $$n Fuzz target(s)"

lint: ## Check formatting (gofmt) and run go vet
	@files=$$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -not -path '*/node_modules/*'); \
	unformatted=$$(gofmt -l $$files); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

check: build ## Validate testdata/quickstart.yaml and compile its policies
	$(BIN) check --config $(CONFIG)

clean: ## Remove build output
	rm -rf bin/
