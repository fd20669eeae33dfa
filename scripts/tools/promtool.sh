#!/usr/bin/env bash
# Prints the path of a `promtool` (Prometheus's linter), fetching it when there is none.
# It comes from Debian's `prometheus` package, but the package is not installed: its postinst would
# start a Prometheus daemon on :9090. The .deb is downloaded with apt and only its promtool
# binary (static) is unpacked under .sluice/tools/prometheus/, where later runs find it.
# Order: $SLUICE_PROMTOOL, a promtool on PATH, the unpacked one, else download (needs apt lists;
# `apt-get update` is run first when we are root).
set -euo pipefail
cd "$(dirname "$0")/../.."
tools=.sluice/tools/prometheus
unpacked="$PWD/$tools/usr/bin/promtool"

if [[ -n "${SLUICE_PROMTOOL:-}" ]]; then echo "$SLUICE_PROMTOOL"; exit 0; fi
if command -v promtool >/dev/null 2>&1; then command -v promtool; exit 0; fi
if [[ -x "$unpacked" ]]; then echo "$unpacked"; exit 0; fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "promtool.sh: no promtool and no apt-get: install Prometheus's promtool and put it on PATH (or set SLUICE_PROMTOOL)" >&2
  exit 1
fi
download=$(mktemp -d)
chmod a+rwx "$download" # apt downloads as its own _apt user
trap 'rm -rf "$download"' EXIT
if [[ $(id -u) -eq 0 ]]; then apt-get update -qq >&2; fi
(cd "$download" && apt-get download -qq prometheus >&2) || {
  echo "promtool.sh: could not download Debian's prometheus package (as root, \`apt-get update\` first)" >&2
  exit 1
}
mkdir -p "$tools"
dpkg-deb --fsys-tarfile "$download"/prometheus_*.deb | tar -x -C "$tools" ./usr/bin/promtool
"$unpacked" --version >&2
echo "$unpacked"
