#!/usr/bin/env bash
# Regenerates the plugin contract's Go code from its .proto.
#
#   scripts/protoc.sh setup      install protoc (apt-get) and the Go plugins
#   scripts/protoc.sh [gen [OUT]] regenerate worker/pluginapi/pluginpb (or
#                                 into OUT, which TestGeneratedCodeIsFresh
#                                 compares with the committed files)
#
# Versions are pinned so regeneration is byte-for-byte reproducible:
# protoc-gen-go is the google.golang.org/protobuf version in go.mod,
# protoc-gen-go-grpc is pinned below, protoc is Debian 12's 3.21.12.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PROTO_DIR=worker/pluginapi/pluginpb
PROTO=handler.proto
GRPC_PLUGIN_VERSION=v1.6.2 # google.golang.org/grpc/cmd/protoc-gen-go-grpc
PROTOBUF_VERSION=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)
TOOLS=$ROOT/bin/protoc-tools # project-local, so other projects' versions never win
export PATH=$TOOLS:$PATH

setup() {
	if ! command -v protoc >/dev/null; then
		echo "protoc.sh: installing protobuf-compiler" >&2
		if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
		$SUDO apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq protobuf-compiler >&2
	fi
	mkdir -p "$TOOLS"
	if [ "$("$TOOLS/protoc-gen-go" --version 2>/dev/null || true)" != "protoc-gen-go $PROTOBUF_VERSION" ]; then
		echo "protoc.sh: installing protoc-gen-go $PROTOBUF_VERSION" >&2
		GOBIN=$TOOLS go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOBUF_VERSION"
	fi
	if [ "$("$TOOLS/protoc-gen-go-grpc" --version 2>/dev/null || true)" != "protoc-gen-go-grpc ${GRPC_PLUGIN_VERSION#v}" ]; then
		echo "protoc.sh: installing protoc-gen-go-grpc $GRPC_PLUGIN_VERSION" >&2
		GOBIN=$TOOLS go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$GRPC_PLUGIN_VERSION"
	fi
}

gen() {
	local out=${1:-$ROOT/$PROTO_DIR}
	command -v protoc >/dev/null || { echo "protoc.sh: protoc is not installed (run scripts/protoc.sh setup)" >&2; exit 2; }
	setup # the Go plugins only; cheap when they are there
	mkdir -p "$out"
	protoc -I "$ROOT/$PROTO_DIR" \
		--go_out="$out" --go_opt=paths=source_relative \
		--go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
		"$ROOT/$PROTO_DIR/$PROTO"
}

case "${1:-gen}" in
setup) setup ;;
gen) gen "${2:-}" ;;
*) echo "usage: $0 [setup | gen [OUTDIR]]" >&2; exit 2 ;;
esac
