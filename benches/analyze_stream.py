#!/usr/bin/env python3
"""Streaming benchmark for `flowaudit analyze` (issue: core, performance).

Generates a deterministic 1,000,000-statement trace (40 flows x 6 steps, 16
connections, N+1 loops, repeated lookups, loops of explicit transactions,
markers and sqlcommenter tags), then, in the same invocation, times
`flowaudit analyze` on it against `wc -l` reading the same file (the floor of
reading it), and reports the median of several runs and the peak memory
(max RSS from /usr/bin/time).

Targets: analyze under 10 s, peak memory under 200 MB. Exits 1 if one fails.

    python3 benches/analyze_stream.py [--statements N] [--runs R]
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def generate(path, target):
    rnd = random.Random(7)
    tables = ["products", "inventory", "categories", "users", "orders", "order_items",
              "carts", "cart_items", "reviews", "addresses", "payments", "shipments"]
    n = 0
    with open(path, "w") as out:
        def emit(sql, conn, params=None, rows=None, **extra):
            nonlocal n
            ev = {"sql": sql, "conn": conn, "duration_us": rnd.randint(50, 3000), "source": "proxy"}
            if params is not None:
                ev["params"] = params
            if rows is not None:
                ev["rows"] = rows
            ev.update(extra)
            out.write(json.dumps(ev, separators=(",", ":")))
            out.write("\n")
            n += 1

        request = 0
        while n < target:
            request += 1
            flow = f"flow_{request % 40}"
            conn = request % 16 + 1
            emit(f"SET flowaudit.flow = '{flow}'", conn)
            for step_no in range(6):
                step = f"step_{step_no}"
                emit(f"SET flowaudit.step = '{step}'", conn)
                # The same code path runs the same statements on every request.
                parent, child = random.Random(f"{flow}/{step}").sample(tables, 2)
                k = rnd.randint(5, 25)
                emit(f'SELECT "{parent}"."id", "{parent}"."name" FROM "{parent}" '
                     f'WHERE "{parent}"."tenant_id" = $1 ORDER BY "{parent}"."id" LIMIT $2',
                     conn, [str(rnd.randint(1, 50)), str(k)], k)
                for _ in range(k):  # the N+1
                    emit(f'SELECT "{child}".* FROM "{child}" WHERE "{child}"."{parent}_id" = $1 '
                         f"/*flow='{flow}',step='{step}'*/",
                         conn, [str(rnd.randint(1, 10**6))], 1)
                for _ in range(2):  # a repeated lookup
                    emit('SELECT "users"."id", "users"."email" FROM "users" WHERE "users"."id" = $1 LIMIT 1',
                         conn, [str(request)], 1)
                for _ in range(3):  # independent units of work
                    emit("BEGIN", conn)
                    emit(f"UPDATE {child} SET updated_at = now(), version = version + 1 WHERE id = {rnd.randint(1, 10**6)}",
                         conn, rows=1, txn="open")
                    emit(f"INSERT INTO audit_log (actor, action, at) VALUES ({request}, 'touch', now())",
                         conn, rows=1, txn="open")
                    emit("COMMIT", conn, txn="open")
                emit(f"SELECT count(*) FROM {parent} WHERE id IN ({', '.join(str(rnd.randint(1, 999)) for _ in range(rnd.randint(1, 40)))})",
                     conn, rows=1)
    return n


def measure(cmd, runs):
    times, peaks = [], []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode not in (0, 1):
            sys.exit(f"{' '.join(cmd)} failed with {proc.returncode}:\n{proc.stderr}")
        peaks.append(int(proc.stderr.strip().splitlines()[-1]))
    return statistics.median(times), max(peaks)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--statements", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "release", "flowaudit")
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "trace.jsonl")
        n = generate(trace, args.statements)
        size = os.path.getsize(trace) / 1e6
        print(f"trace: {n:,} statements, {size:.0f} MB")
        wc_time, _ = measure(["wc", "-l", trace], args.runs)
        # --skip-invariants: ./rules holds the demo shop's invariants, which
        # need a database this benchmark does not have.
        fa_time, fa_peak = measure([exe, "analyze", trace, "--skip-invariants", "--format", "json",
                                    "--output", os.path.join(tmp, "report.json")], args.runs)
        with open(os.path.join(tmp, "report.json")) as f:
            report = json.load(f)
        rules = sorted({f["rule"] for f in report["findings"]})
        print(f"report: {report['summary']['statements']:,} statements, "
              f"{len(report['findings'])} findings ({', '.join(rules)})")
        print(f"wc -l:            median {wc_time:.2f} s over {args.runs} runs")
        print(f"flowaudit analyze: median {fa_time:.2f} s over {args.runs} runs "
              f"= {n / fa_time:,.0f} statements/s, {fa_time / wc_time:.1f}x wc -l")
        print(f"peak memory (max RSS): {fa_peak / 1024:.0f} MB")
        ok_time = args.statements < 1_000_000 or fa_time < 10
        ok_mem = fa_peak / 1024 < 200
        print(f"target: under 10 s for 1,000,000 statements: {'PASS' if ok_time else 'FAIL'}")
        print(f"target: peak memory under 200 MB: {'PASS' if ok_mem else 'FAIL'}")
        # The performance issue's goal, printed beside the target it does not
        # replace (reading and auditing run on two threads: it needs two cores).
        goal = args.statements < 1_000_000 or fa_time < 2
        print(f"goal: under 2 s for 1,000,000 statements: {'met' if goal else 'not met'}")
        if report["summary"]["statements"] + report["summary"]["markers"] != n:
            print("FAIL: the report does not account for every statement")
            sys.exit(1)
        sys.exit(0 if ok_time and ok_mem else 1)


if __name__ == "__main__":
    main()
