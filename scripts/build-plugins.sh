#!/usr/bin/env bash
# Builds every handler plugin (worker/plugins/*/cmd/*) into OUTDIR and
# writes OUTDIR/plugins.json, the manifest the worker checks each binary's
# SHA-256 against (see worker/pluginhost).
#
#   scripts/build-plugins.sh OUTDIR        e.g. bin/plugins
#
# A plugin's manifest name is its handler's folder (worker/plugins/<name>/),
# which must also be the name its Info reports. Binaries are renamed into
# place and the manifest is written last, atomically, so a running worker
# watching OUTDIR reloads once, onto a complete set (a running plugin keeps
# its old, unlinked, binary until the reload retires it).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
cd "$(dirname "$0")/.."
OUT=$1
mkdir -p "$OUT"
TMP=$(mktemp -d "$OUT/.build-XXXXXX")
trap 'rm -rf "$TMP"' EXIT

entries=()
for cmd in worker/plugins/*/cmd/*/; do
	[ -f "$cmd/main.go" ] || continue
	cmd=${cmd%/}
	name=$(basename "$(dirname "$(dirname "$cmd")")") # worker/plugins/<name>/cmd/<bin>
	bin=$(basename "$cmd")
	CGO_ENABLED=0 go build -trimpath -o "$TMP/$bin" "./$cmd"
	sum=$(sha256sum "$TMP/$bin" | cut -d' ' -f1)
	mv -f "$TMP/$bin" "$OUT/$bin"
	entries+=("$(printf '    {"name": "%s", "file": "%s", "sha256": "%s"}' "$name" "$bin" "$sum")")
	echo "build-plugins: $name -> $OUT/$bin ($sum)" >&2
done
[ ${#entries[@]} -gt 0 ] || { echo "build-plugins: no plugin under worker/plugins/*/cmd/" >&2; exit 1; }

{
	echo '{"plugins": ['
	for i in "${!entries[@]}"; do
		sep=,
		[ "$i" -eq $((${#entries[@]} - 1)) ] && sep=
		echo "${entries[$i]}$sep"
	done
	echo ']}'
} >"$TMP/plugins.json"
mv -f "$TMP/plugins.json" "$OUT/plugins.json"
