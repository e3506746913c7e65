#!/usr/bin/env bash
# Installs what tests/driver_suite.rs needs, pinned by hash: pytest in
# tests/driver_suite/.venv (requirements.txt), and PyMySQL's source
# distribution (suite.txt) unpacked beside it, whose pymysql/tests is the
# suite. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x .venv/bin/python ] || ! cmp -s requirements.txt .venv/requirements.txt; then
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.txt
    cp requirements.txt .venv/requirements.txt
fi

version="$(sed -n 's/^PyMySQL==\([^ ]*\).*/\1/p' suite.txt)"
if [ ! -f ".venv/PyMySQL-$version/pymysql/tests/base.py" ]; then
    rm -rf .venv/sdist
    # --no-binary: the wheel has no tests. pip checks the hash in suite.txt.
    .venv/bin/pip download --quiet --disable-pip-version-check --no-deps \
        --no-binary :all: --require-hashes -r suite.txt -d .venv/sdist
    tar -xzf ".venv/sdist/PyMySQL-$version.tar.gz" -C .venv
fi
.venv/bin/python -m pytest --version >/dev/null
echo "driver suite: pytest $(.venv/bin/python -m pytest --version 2>&1 | cut -d' ' -f2) and PyMySQL $version's tests ready"
