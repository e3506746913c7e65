#!/usr/bin/env bash
# Installs what tests/driver_suite.rs needs, pinned by hash: pytest in
# tests/driver_suite/.venv (requirements.txt), and the drivers' source
# distributions (suite.txt) unpacked beside it, each shipping its suite.
# MariaDB Connector/Python is a C extension on Connector/C: without
# mariadb_config (Debian's libmariadb-dev) it is left out, and its test says
# so. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x .venv/bin/python ] || ! cmp -s requirements.txt .venv/requirements.txt; then
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.txt
    cp requirements.txt .venv/requirements.txt
fi

ready=()
while read -r line; do
    case "$line" in '' | '#'*) continue ;; esac
    spec="${line%% *}"
    name="${spec%%==*}"
    version="${spec#*==}"
    if [ ! -d ".venv/$name-$version" ]; then
        if [ "$name" = mariadb ] && ! command -v mariadb_config >/dev/null; then
            echo "driver suite: leaving out $spec: no mariadb_config (install libmariadb-dev)" >&2
            continue
        fi
        echo "$line" >.venv/pinned.txt
        # --no-binary: a wheel has no tests. pip checks the hash.
        .venv/bin/pip download --quiet --disable-pip-version-check --no-deps \
            --no-binary :all: --require-hashes -r .venv/pinned.txt -d .venv/sdist
        if [ "$name" = mariadb ]; then
            .venv/bin/pip install --quiet --disable-pip-version-check --no-deps \
                ".venv/sdist/$name-$version.tar.gz"
        fi
        tar -xzf ".venv/sdist/$name-$version.tar.gz" -C .venv
    fi
    ready+=("$spec")
done <suite.txt
.venv/bin/python -m pytest --version >/dev/null
echo "driver suite: pytest $(.venv/bin/python -m pytest --version 2>&1 | cut -d' ' -f2); suites of ${ready[*]} ready"
