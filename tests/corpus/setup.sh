#!/usr/bin/env bash
# Installs what the corpus's applications need, pinned: a Python venv in
# tests/corpus/.venv from python/requirements.txt, and node/node_modules from
# node/package-lock.json. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x .venv/bin/python ] || ! cmp -s python/requirements.txt .venv/requirements.txt; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r python/requirements.txt
    cp python/requirements.txt .venv/requirements.txt
fi
.venv/bin/python -c 'import sqlalchemy, psycopg, asyncpg, django, pymysql, opentelemetry.sdk, opentelemetry.instrumentation.psycopg, opentelemetry.instrumentation.asyncpg, opentelemetry.exporter.otlp.proto.common'

if [ -f node/package-lock.json ]; then
    if [ ! -d node/node_modules ] || ! cmp -s node/package-lock.json node/node_modules/.package-lock.json.copy; then
        (cd node && npm ci --no-audit --no-fund --loglevel=error)
        cp node/package-lock.json node/node_modules/.package-lock.json.copy
    fi
fi
echo "corpus: Python $(.venv/bin/python --version | cut -d' ' -f2) venv and Node modules ready"
