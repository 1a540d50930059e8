#!/usr/bin/env bash
# Build the gtm contender into bench/.build/gtm-bench (needs only Go and the Go module proxy).
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/go/bin"
# go.sum pins every module; gtm v2 has no checksum-database entry behind this proxy, so
# never ask the checksum database about it (go.sum still verifies the download).
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/rwynn/gtm"
mkdir -p ../../.build
go build -o ../../.build/gtm-bench .
