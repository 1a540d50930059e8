#!/usr/bin/env bash
# Builds the mongo-connector 3.1.1 contender's own virtualenv, in the bench cache (outside the
# clone: $GTOM_CACHE, else ~/.cache/gtom) under venvs/mongo-connector.
# mongo-connector (last release 2018) installs on Python 3.11 only beside pymongo 3.13
# (it calls APIs that pymongo 4 removed). Idempotent: a marker file records a finished install.
# Usage: bench/peers/mongo_connector/setup.sh   (PYTHON=/path/to/python3.11 to choose the interpreter)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${GTOM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gtom}"
VENV="$CACHE/venvs/mongo-connector"
# Every package pinned, so that a clean machine resolves the same set.
REQS=(
  "mongo-connector==3.1.1"
  "pymongo==3.13.0"
  "importlib-metadata==10.2.0"
  "importlib-resources==7.1.0"
  "autocommand==2.2.2"
  "lazy-importer==0.1.0"
  "zipp==4.1.2"
)
MARKER="$VENV/.installed-$(printf '%s\n' "${REQS[@]}" | sha256sum | cut -c1-16)"

if [[ -f "$MARKER" ]]; then
  echo "mongo-connector venv ready: $VENV" >&2
  exit 0
fi

PY="${PYTHON:-python3.11}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
  echo "mongo-connector needs Python 3.11 (set PYTHON=...); '$PY' is not it" >&2
  exit 1
fi

rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQS[@]}"
# The import check the contender relies on (collections.MutableSet aliased as in contender.py).
"$VENV/bin/python" - <<'PY'
import collections, collections.abc
collections.MutableSet = collections.abc.MutableSet
import pymongo, mongo_connector.connector
assert pymongo.version.startswith("3.13"), pymongo.version
PY
touch "$MARKER"
echo "mongo-connector venv ready: $VENV" >&2
