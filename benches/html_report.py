#!/usr/bin/env python3
"""The HTML report of a 1,000,000-statement trace (issue 18).

Generates analyze_stream.py's deterministic trace (40 flows x 6 steps, 16
connections, N+1 loops, transactions), then in the same invocation:

- times `flowaudit analyze --format html` against `--format json` on it (the
  timeline's cost, as a ratio of medians) and takes both peak memories;
- checks the HTML file's size (target: under 5 MB);
- opens it in headless Chromium with tests/browser/check_report.js, several
  times, beside the demo's report as a reference, and compares the median
  load time with the target (under 2 s; the navigation's loadEventEnd).

Needs Debian's chromium and puppeteer-core (.ci/run installs both; or
`npm install --prefix .ci/node puppeteer-core`). Exits 1 if a target fails.

    python3 benches/html_report.py [--statements N] [--runs R]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
import analyze_stream  # noqa: E402


def open_in_browser(path, runs):
    env = dict(os.environ, NODE_PATH=os.path.join(ROOT, ".ci", "node", "node_modules"))
    proc = subprocess.run(["node", os.path.join(ROOT, "tests", "browser", "check_report.js"), path,
                           "--runs", str(runs)], env=env, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"check_report.js failed on {path}:\n{proc.stderr}")
    m = re.search(r"loaded in (\d+) ms", proc.stdout)
    return int(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--statements", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "release", "flowaudit")
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "trace.jsonl")
        n = analyze_stream.generate(trace, args.statements)
        print(f"trace: {n:,} statements, {os.path.getsize(trace) / 1e6:.0f} MB")
        html = os.path.join(tmp, "report.html")
        # --skip-invariants: ./rules holds the demo shop's invariants.
        json_time, json_peak = analyze_stream.measure([exe, "analyze", trace, "--skip-invariants", "--format", "json",
                                        "--output", os.path.join(tmp, "report.json")], args.runs)
        html_time, html_peak = analyze_stream.measure([exe, "analyze", trace, "--skip-invariants", "--format", "html",
                                        "--output", html], args.runs)
        size = os.path.getsize(html)
        print(f"analyze --format json: median {json_time:.2f} s, peak {json_peak / 1024:.0f} MB")
        print(f"analyze --format html: median {html_time:.2f} s, peak {html_peak / 1024:.0f} MB "
              f"({html_time / json_time:.2f}x json's time)")
        demo = os.path.join(tmp, "demo.html")
        subprocess.run([exe, "demo", "--format", "html", "--output", demo], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        browser_runs = max(args.runs, 5)
        demo_ms = open_in_browser(demo, browser_runs)
        big_ms = open_in_browser(html, browser_runs)
        print(f"load: 1M report {big_ms} ms, demo report {demo_ms} ms "
              f"({big_ms / max(demo_ms, 1):.1f}x), medians of {browser_runs}")
        ok_size = size < 5 * 1024 * 1024
        ok_load = big_ms < 2000
        print(f"target: file under 5 MB ({size / 1024 / 1024:.2f} MB): {'PASS' if ok_size else 'FAIL'}")
        print(f"target: opens in under 2 s ({big_ms} ms): {'PASS' if ok_load else 'FAIL'}")
        sys.exit(0 if ok_size and ok_load else 1)


if __name__ == "__main__":
    main()
