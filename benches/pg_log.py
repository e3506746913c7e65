#!/usr/bin/env python3
"""Server-log benchmark for `flowaudit analyze` against pgbadger.

Starts a throwaway PostgreSQL cluster (initdb from /usr/lib/postgresql/*/bin,
as the postgres user when run as root) with log_min_duration_statement = 0 and
the default log_line_prefix, runs `pgbench -M extended` on it until its stderr
log holds at least --min-mb megabytes (each statement logs its parse, bind and
execute lines with durations and its parameters), then, in the same
invocation, times on that log:

  - `wc -l` (the floor of reading it),
  - `flowaudit analyze` (release build; median of --runs runs),
  - pgbadger -j 1 (installed with apt-get when missing),

each under /usr/bin/time -v for its peak memory, and compares the statement
counts (flowaudit's JSON report against pgbadger's "Number of queries").

Targets: flowaudit at least 100x faster than pgbadger (50x is the floor
that must hold whatever the machine; both are printed), peak memory under
200 MB, the same statement count. Exits 1 if one fails.

    python3 benches/pg_log.py [--min-mb 150] [--runs 3] [--keep DIR]
"""
import argparse
import glob
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "%m [%p] %q%u@%d "


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_tools():
    missing = [p for p, exe in (("pgbadger", "pgbadger"), ("time", "/usr/bin/time"))
               if shutil.which(exe) is None]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(["apt-get", "install", "-y", "-q", *missing], env=env, stdout=subprocess.DEVNULL)


def as_postgres(cmd):
    return ["runuser", "-u", "postgres", "--", *cmd] if os.getuid() == 0 else cmd


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd, stdout=subprocess.DEVNULL):
    """Runs cmd under /usr/bin/time -v: (seconds, peak RSS in MB, stdout)."""
    start = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=stdout, stderr=subprocess.PIPE,
                       text=True)
    secs = time.perf_counter() - start
    if p.returncode not in (0, 1):
        sys.exit(f"{cmd[0]} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return secs, rss / 1024, p.stdout


def make_log(work, min_mb):
    bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    data = os.path.join(work, "data")
    log = os.path.join(work, "postgresql.log")
    port = free_port()
    sh(as_postgres([f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"]),
       stdout=subprocess.DEVNULL)
    opts = (f"-p {port} -k {work} -c listen_addresses='' -c logging_collector=off "
            f"-c fsync=off -c synchronous_commit=off -c log_line_prefix='{PREFIX}'")
    sh(as_postgres([f"{bindir}/pg_ctl", "-D", data, "-w", "-l", log, "-o", opts, "start"]),
       stdout=subprocess.DEVNULL)
    try:
        conn = ["-h", work, "-p", str(port), "-U", "postgres"]
        sh(as_postgres(["pgbench", *conn, "-i", "-q", "-s", "2", "postgres"]),
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sh(as_postgres(["psql", *conn, "-q", "-d", "postgres", "-c",
                        "alter system set log_min_duration_statement = 0",
                        "-c", "select pg_reload_conf()"]), stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        while os.path.getsize(log) < min_mb * 1_000_000:
            # The built-in TPC-B-like script: BEGIN, 3 UPDATEs, a SELECT, an
            # INSERT, END, each parsed, bound and executed with its parameters.
            sh(as_postgres(["pgbench", *conn, "-n", "-M", "extended", "-c", "4", "-j", "2",
                            "-t", "10000", "postgres"]),
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        sh(as_postgres([f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "stop"]),
           stdout=subprocess.DEVNULL)
    return log


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-mb", type=int, default=150)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", help="build the log in DIR and keep it")
    args = ap.parse_args()

    ensure_tools()
    sh(["cargo", "build", "--release", "--quiet"], cwd=ROOT)
    flowaudit = os.path.join(ROOT, "target", "release", "flowaudit")

    work = args.keep or tempfile.mkdtemp(prefix="flowaudit-pglog-")
    os.makedirs(work, exist_ok=True)
    if os.getuid() == 0:
        shutil.chown(work, "postgres")
    try:
        log = make_log(work, args.min_mb)
        os.chmod(log, 0o644)
        size = os.path.getsize(log) / 1_000_000
        print(f"log: {log}, {size:.0f} MB")

        wc_secs, wc_rss, wc_out = timed(["wc", "-l", log], stdout=subprocess.PIPE)
        lines = int(wc_out.split()[0])

        runs = []
        report = None
        for _ in range(args.runs):
            # --skip-invariants: ./rules holds the demo shop's invariants.
            secs, rss, out = timed([flowaudit, "analyze", log, "--input", "pg-stderr", "--skip-invariants",
                                    "--format", "json", "--fail-on", "never"],
                                   stdout=subprocess.PIPE)
            runs.append((secs, rss))
            report = json.loads(out)
        fa_secs = statistics.median(r[0] for r in runs)
        fa_rss = max(r[1] for r in runs)
        fa_count = report["summary"]["statements"] + report["summary"]["markers"]

        badger_out = os.path.join(work, "pgbadger.txt")
        pb_secs, pb_rss, _ = timed(["pgbadger", "-j", "1", "-f", "stderr", "--prefix", PREFIX,
                                    "-x", "text", "-o", badger_out, log])
        with open(badger_out) as f:
            text = f.read()
        m = re.search(r"Number of queries: ([\d,]+)", text)
        pb_count = int(m.group(1).replace(",", "")) if m else -1

        ratio = pb_secs / fa_secs
        print(f"lines: {lines:,}")
        print(f"wc -l:      {wc_secs:7.2f} s  {wc_rss:6.0f} MB")
        print(f"flowaudit:  {fa_secs:7.2f} s  {fa_rss:6.0f} MB  (median of {args.runs}) "
              f"{fa_count:,} statements")
        print(f"pgbadger:   {pb_secs:7.2f} s  {pb_rss:6.0f} MB  {pb_count:,} queries")
        print(f"ratio pgbadger / flowaudit: {ratio:.1f}x; flowaudit / wc -l: "
              f"{fa_secs / wc_secs:.1f}x")
        for note in report.get("notes", []):
            print(f"note: {note}")
        ok = True
        print(f"floor 50x: {'PASS' if ratio >= 50 else 'FAIL'}; "
              f"target 100x: {'PASS' if ratio >= 100 else 'FAIL'}")
        if ratio < 100:
            print(f"FAIL: flowaudit is less than 100x faster than pgbadger ({ratio:.1f}x)")
            ok = False
        if fa_rss >= 200:
            print("FAIL: peak memory of 200 MB or more")
            ok = False
        if fa_count != pb_count:
            print(f"FAIL: statement counts differ ({fa_count} != {pb_count})")
            ok = False
        sys.exit(0 if ok else 1)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
