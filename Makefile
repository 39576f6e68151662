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
CMDS := ./orchestrator/cmd/orchestrator ./worker/cmd/worker ./services/users/cmd/users ./services/rides/cmd/rides ./cmd/loadgen

.PHONY: help servers servers-down build traefik protoc generate unit acceptance test run chaos fmt vet clean

help: ## list the targets
	@echo "usage: make TARGET"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

servers: ## start RabbitMQ and ZooKeeper on loopback (installs them when missing)
	scripts/servers.sh up

servers-down: ## stop RabbitMQ and ZooKeeper
	scripts/servers.sh down

build: ## build the binaries into bin/ and the worker's handler plugins into bin/plugins/
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ $(CMDS)
	scripts/build-plugins.sh bin/plugins

traefik: ## make sure bin/traefik exists (builds it the first time, ~7 min)
	scripts/traefik.sh >/dev/null

protoc: ## install protoc and the pinned Go generators (the generated-code freshness test needs them)
	scripts/protoc.sh setup

generate: protoc ## regenerate the plugin contract's Go code from its .proto
	scripts/protoc.sh

# Integration tests use the real servers, the built binaries, Traefik and
# protoc; RIDESHARE_REQUIRE_* turn "skip when missing" into "fail".
unit: export RIDESHARE_BIN := $(BIN)
unit: export AMQP_URL := amqp://127.0.0.1:5672/
unit: export ZK_SERVERS := 127.0.0.1:2181
unit: export RIDESHARE_REQUIRE_SERVERS := 1
unit: export RIDESHARE_REQUIRE_TRAEFIK := 1
unit: servers build traefik protoc ## go test -race ./... (with the servers, bin/ and Traefik)
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m ./...

acceptance: ## the shared acceptance suite against a throwaway stack
	scripts/acceptance.sh

test: servers build traefik unit acceptance ## everything CI runs

CHAOS_DURATION ?= 4m
chaos: servers build ## the long chaos run (CHAOS_DURATION, default 4m; restarts RabbitMQ once); report in .run/chaos-report.json
	CGO_ENABLED=0 $(GO) build -o bin/ ./cmd/chaos
	@mkdir -p .run
	bin/chaos --duration $(CHAOS_DURATION) --rabbit-restart node --zk-expiry both --report .run/chaos-report.json

run: ## the whole stack in the foreground (Ctrl-C stops it); entry point :8080
	scripts/run.sh

fmt: ## gofmt -w the Go files
	$(GO) fmt ./...

vet: ## go vet
	$(GO) vet ./...

clean: ## remove the built binaries and plugins (not bin/traefik) and the state of `make run` (.run/)
	rm -f $(addprefix bin/,$(notdir $(CMDS)))
	rm -rf bin/plugins .run
