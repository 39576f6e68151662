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
CMDS := ./orchestrator/cmd/orchestrator ./worker/cmd/worker ./services/users/cmd/users ./services/rides/cmd/rides

.PHONY: help servers servers-down build traefik unit acceptance test run fmt vet clean

help: ## list the targets
	@echo "usage: make TARGET"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

servers: ## start RabbitMQ and ZooKeeper on loopback (installs them when missing)
	scripts/servers.sh up

servers-down: ## stop RabbitMQ and ZooKeeper
	scripts/servers.sh down

build: ## build the binaries into bin/
	CGO_ENABLED=0 $(GO) build -o bin/ $(CMDS)

traefik: ## make sure bin/traefik exists (builds it the first time, ~7 min)
	scripts/traefik.sh >/dev/null

# Integration tests use the real servers and the built binaries.
unit: export RIDESHARE_BIN := $(BIN)
unit: export AMQP_URL := amqp://127.0.0.1:5672/
unit: export ZK_SERVERS := 127.0.0.1:2181
unit: servers build ## go test -race ./... (with the servers and bin/)
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...

acceptance: ## the shared acceptance suite against a throwaway stack
	scripts/acceptance.sh

test: servers build traefik unit acceptance ## everything CI runs

run: ## the whole stack in the foreground (Ctrl-C stops it); entry point :8080
	scripts/run.sh

fmt: ## gofmt -w the Go files
	$(GO) fmt ./...

vet: ## go vet
	$(GO) vet ./...

clean: ## remove bin/ (keeps bin/traefik) and the state of `make run` (.run/)
	find bin -mindepth 1 -maxdepth 1 ! -name traefik -exec rm -rf {} + 2>/dev/null || true
	rm -rf .run
