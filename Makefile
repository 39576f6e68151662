# RideShare: build, run and test. `make` (or `make help`) lists the targets.
#
# RabbitMQ and ZooKeeper come from Debian's packages and run on loopback
# (scripts/servers.sh); Traefik is bin/traefik (scripts/traefik.sh).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# Targets run one after the other, in the order given (test relies on it).
.NOTPARALLEL:

GO ?= go
BIN := $(CURDIR)/bin
# The binaries: one per cmd package, each built into bin/ under its folder's name.
CMDS := ./orchestrator/cmd/orchestrator ./worker/cmd/worker ./services/users/cmd/users ./services/rides/cmd/rides ./cmd/loadgen ./traefik/cmd/traefik-render ./cmd/bench ./cmd/rideshare ./cmd/images
# Docker: the daemon answers (then the docker tests must pass, not skip).
DOCKER_OK := $(shell timeout 20 docker info >/dev/null 2>&1 && echo 1)
# Image labels: the commit and its time, so the same commit gives the same labels.
REVISION := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
CREATED := $(shell git log -1 --format=%cI 2>/dev/null)

.PHONY: help servers servers-down broker-test chromium build traefik rqlite images compose protoc generate unit apicheck acceptance acceptance-docker bench bench-smoke test run nomad chaos fmt vet clean

# The test run's own RabbitMQ vhost and user (never guest): one per checkout,
# its URL (with the generated password) in .run/test/amqp.url, mode 0600.
TEST_STATE := $(CURDIR)/.run/test
TEST_BROKER_NAME ?= test-$(shell printf %s '$(CURDIR)' | sha1sum | cut -c1-8)
# Statuses each route produced in the tests, for the OpenAPI check (apicheck).
API_RECORD := $(TEST_STATE)/apirecord

help: ## list the targets
	@echo "usage: make TARGET"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

servers: ## start RabbitMQ and ZooKeeper on loopback (installs them when missing)
	scripts/servers.sh up

servers-down: ## stop RabbitMQ and ZooKeeper
	scripts/servers.sh down

broker-test: ## the test run's RabbitMQ vhost and user (URL in .run/test/amqp.url, mode 0600)
	scripts/servers.sh broker-user $(TEST_BROKER_NAME) $(TEST_STATE)/amqp.url

chromium: ## make sure headless Chromium is installed (the cluster page's browser test)
	scripts/chromium.sh >/dev/null

build: ## build the binaries into bin/ and the worker's handler plugins into bin/plugins/
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ $(CMDS)
	scripts/build-plugins.sh bin/plugins

traefik: ## make sure bin/traefik exists (builds it the first time, ~7 min)
	scripts/traefik.sh >/dev/null

rqlite: ## make sure bin/rqlited exists (builds rqlite v8.43.4 the first time, ~3 min; for make bench)
	scripts/rqlite.sh >/dev/null

images: build ## build the container images rideshare/{orchestrator,worker,users,rides}:dev (and :REVISION) from bin/
ifeq ($(DOCKER_OK),1)
	bin/images --bin bin --tag dev,$(REVISION) --version dev --revision $(REVISION) --created "$(CREATED)"
else
	@echo "images: skipped, the Docker daemon does not answer (docker info)"
endif

compose: ## make sure docker-compose is installed (Debian's 1.29; its test checks docker-compose.yml)
	@command -v docker-compose >/dev/null || { command -v apt-get >/dev/null && \
	  { apt-get install -y -q docker-compose >/dev/null 2>&1 || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose >/dev/null; }; } || \
	  echo "compose: docker-compose is missing and cannot be installed here"; }

protoc: ## install protoc and the pinned Go generators (the generated-code freshness test needs them)
	scripts/protoc.sh setup

generate: protoc ## regenerate the plugin contract's Go code from its .proto
	scripts/protoc.sh

# Integration tests use the real servers, the built binaries, Traefik and
# protoc; RIDESHARE_REQUIRE_* turn "skip when missing" into "fail".
unit: export RIDESHARE_BIN := $(BIN)
unit: export RIDESHARE_AMQP_URL_FILE := $(TEST_STATE)/amqp.url
unit: export ZK_SERVERS := 127.0.0.1:2181
unit: export RIDESHARE_REQUIRE_SERVERS := 1
unit: export RIDESHARE_REQUIRE_TRAEFIK := 1
unit: export RIDESHARE_REQUIRE_CHROMIUM := 1
unit: export RIDESHARE_API_RECORD := $(API_RECORD)
unit: export RIDESHARE_REQUIRE_DOCKER := $(DOCKER_OK)
unit: export RIDESHARE_REQUIRE_COMPOSE := $(shell command -v docker-compose >/dev/null && echo 1)
unit: servers build traefik protoc broker-test chromium ## go test -race ./... (with the servers, bin/, Traefik, Chromium and, where it answers, Docker)
	rm -rf $(API_RECORD) && mkdir -p $(API_RECORD)
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m ./...

apicheck: export RIDESHARE_API_RECORD := $(API_RECORD)
apicheck: export RIDESHARE_API_CHECK := 1
apicheck: ## after unit: every status the OpenAPI documents name was produced by a test, and no other
	$(GO) test -count=1 -run 'TestOpenAPI_StatusesReached' ./docs/

acceptance: ## the shared acceptance suite against a throwaway stack
	scripts/acceptance.sh

acceptance-docker: ## the same suite against a stack on the docker runtime (ACCEPTANCE_DOCKER_NAME, default accdocker)
ifeq ($(DOCKER_OK),1)
	RUNTIME=docker ACCEPTANCE_NAME=$${ACCEPTANCE_DOCKER_NAME:-accdocker} scripts/acceptance.sh
else
	@echo "acceptance-docker: skipped, the Docker daemon does not answer (docker info)"
endif

# The side-by-side benchmark (internal/bench, docs/benchmarks.md): ports
# 20000-20499, stacks bench-1 and bench-8, state in .bench/. Knobs through
# BENCH_ARGS, e.g. BENCH_ARGS="-duration 8s -rounds 3 -clients 1,16".
BENCH_ARGS ?=
bench: servers build traefik rqlite ## our DBaaS vs rqlite in one run (~7 min); the table goes into docs/benchmarks.md
	@mkdir -p .bench
	bin/bench -docs docs/benchmarks.md -json .bench/report.json -profile-dir .bench/profiles $(BENCH_ARGS)

# The smoke's ports and names (BENCH_SMOKE_PORT_BASE.. +401, stacks
# BENCH_SMOKE_NAME-1 and -2), so that two checkouts can run make test at once.
# A hung smoke is stopped after 10 min (SIGTERM: the bench stops its stacks).
BENCH_SMOKE_PORT_BASE ?= 19000
BENCH_SMOKE_NAME ?= bench-smoke
bench-smoke: servers build traefik rqlite ## make bench's harness end to end with tiny loads, 30-90 s (checks it works, not speed)
	timeout 600 bin/bench -smoke -port-base $(BENCH_SMOKE_PORT_BASE) -name $(BENCH_SMOKE_NAME)

test: servers build traefik compose images unit apicheck acceptance acceptance-docker bench-smoke ## everything CI runs

CHAOS_DURATION ?= 4m
chaos: servers build broker-test ## the long chaos run (CHAOS_DURATION, default 4m; restarts RabbitMQ once); report in .run/chaos-report.json
	CGO_ENABLED=0 $(GO) build -o bin/ ./cmd/chaos
	@mkdir -p .run
	bin/chaos --amqp-url-file $(TEST_STATE)/amqp.url --duration $(CHAOS_DURATION) --rabbit-restart node --zk-expiry both --report .run/chaos-report.json

run: ## the whole stack in the foreground (Ctrl-C stops it); entry point :8080; RUNTIME=process|docker (default docker when its daemon answers)
	scripts/run.sh

nomad: ## the stack as Nomad jobs on a dev agent (needs nomad; Ctrl-C stops it); docs/nomad.md
	scripts/nomad.sh

fmt: ## gofmt -w the Go files
	$(GO) fmt ./...

vet: ## go vet
	$(GO) vet ./...

clean: ## remove the built binaries and plugins (not bin/traefik) and the state of `make run` (.run/)
	rm -f $(addprefix bin/,$(notdir $(CMDS)))
	rm -rf bin/plugins bin/plugin-signing.pub .run
