#!/usr/bin/env bash
# Builds every handler plugin (worker/plugins/*/cmd/*) into OUTDIR and
# writes OUTDIR/plugins.json, the manifest the worker checks each binary's
# SHA-256 against (see worker/pluginhost), and its ed25519 signature
# OUTDIR/plugins.json.sig, made with the plugin signing key
# ($RIDESHARE_PLUGIN_KEY, default ~/.config/rideshare/plugin-signing.key,
# mode 0600, made here the first time: a dev key that never enters the
# repo). The public key goes to OUTDIR/../plugin-signing.pub, outside the
# plugin directory, where bin/worker looks for it by default.
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
# Nothing in the plugin directory may be writable by group or others (the
# worker refuses such files).
umask 022
chmod go-w "$OUT"

# The signing tool is the rideshare CLI (rideshare plugin keygen|sign).
CGO_ENABLED=0 go build -o "$TMP/rideshare" ./cmd/rideshare
KEY=${RIDESHARE_PLUGIN_KEY:-${XDG_CONFIG_HOME:-$HOME/.config}/rideshare/plugin-signing.key}
if [ ! -f "$KEY" ]; then
	echo "build-plugins: no plugin signing key at $KEY: making a dev key (mode 0600; keep it out of the repo)" >&2
	"$TMP/rideshare" plugin keygen --key "$KEY" >/dev/null
fi

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
# Signature first, manifest last: a worker that sees the new manifest
# already finds its signature.
"$TMP/rideshare" plugin sign --key "$KEY" "$TMP/plugins.json" >/dev/null
"$TMP/rideshare" plugin pubkey --key "$KEY" --pem >"$TMP/plugin-signing.pub"
mv -f "$TMP/plugin-signing.pub" "$(dirname "$OUT")/plugin-signing.pub"
mv -f "$TMP/plugins.json.sig" "$OUT/plugins.json.sig"
mv -f "$TMP/plugins.json" "$OUT/plugins.json"
echo "build-plugins: signed $OUT/plugins.json with $KEY (public key $(dirname "$OUT")/plugin-signing.pub)" >&2
