#!/usr/bin/env bash
# Build the gtm contender into the bench cache (outside the clone: $GTOM_CACHE, else
# ~/.cache/gtom) as build/gtm-bench. Needs only Go and the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/go/bin"
# go.sum pins every module; gtm v2 has no checksum-database entry behind this proxy, so
# never ask the checksum database about it (go.sum still verifies the download).
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/rwynn/gtm"
CACHE="${GTOM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gtom}"
mkdir -p "$CACHE/build"
go build -o "$CACHE/build/gtm-bench" .
