#!/usr/bin/env python3
"""Throughput and memory of `flowaudit collect` (issue 20).

Sends OTLP/HTTP protobuf requests, as an SDK's or a Collector's exporter
does, to `flowaudit collect` pinned to one core (taskset -c 0), from this
process on another, then stops it and waits for its report. Each request
holds 100 traces of 10 spans: a request span with `http.route`, a query
listing 8 rows, 8 lookups (an N+1). Spans per second are counted from the
first request sent to the collector's exit (its report written), so the
audit of every span is inside the time. A 503 (the audit behind) is sent
again, as exporters do.

Targets: >= 100,000 spans/s on one core, peak memory < 100 MB. Exits 1 if
one is missed.

    python3 benches/collect.py [--spans N] [--runs R]
"""
import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(tag, wire, payload):
    key = varint(tag << 3 | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def string(tag, s):
    return field(tag, 2, s.encode())


def fixed64(tag, n):
    return field(tag, 1, n.to_bytes(8, "little"))


def kv(key, value):
    if isinstance(value, int):
        any_value = field(3, 0, varint(value))
    else:
        any_value = string(1, value)
    return string(1, key) + field(2, 2, any_value)


def span(trace_id, span_id, parent, name, start, end, attrs):
    body = field(1, 2, trace_id) + field(2, 2, span_id)
    if parent:
        body += field(4, 2, parent)
    body += string(5, name) + fixed64(7, start) + fixed64(8, end)
    for k, v in attrs:
        body += field(9, 2, kv(k, v))
    return body


def request(batch, traces=100):
    """An ExportTraceServiceRequest of `traces` traces, children first."""
    spans = []
    base = 1_764_547_200_000_000_000
    for t in range(traces):
        n = batch * traces + t
        trace_id = n.to_bytes(16, "big")
        root = (n * 16 + 1).to_bytes(8, "big")
        start = base + n * 10_000_000
        db = [("db.system.name", "postgresql")]
        spans.append(span(trace_id, (n * 16 + 2).to_bytes(8, "big"), root, "SELECT", start + 1000,
                          start + 2000, db + [("db.query.text", "select id, name from products where category = $1"),
                                              ("db.response.returned_rows", 8)]))
        for i in range(8):
            spans.append(span(trace_id, (n * 16 + 3 + i).to_bytes(8, "big"), root, "SELECT",
                              start + 3000 + i * 1000, start + 3500 + i * 1000,
                              db + [("db.query.text", "select qty from stock where product_id = $1"),
                                    ("db.query.parameter.0", str(i)), ("db.response.returned_rows", 1)]))
        spans.append(span(trace_id, root, b"", f"GET /category/{n % 20}", start, start + 20_000,
                          [("http.route", f"/category/{n % 20}")]))
    scope = b"".join(field(2, 2, s) for s in spans)
    resource = field(1, 2, kv("service.name", "bench"))
    resource_spans = field(1, 2, resource) + field(2, 2, scope)
    return field(1, 2, resource_spans), traces * 10


def run_once(exe, spans_wanted, bodies):
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        proc = subprocess.Popen(
            ["taskset", "-c", "0", "/usr/bin/time", "-f", "%M", exe, "collect", "--listen", "127.0.0.1:0",
             "--skip-invariants", "--format", "json", "--output", report],
            stderr=subprocess.PIPE, text=True, cwd=tmp)
        line = proc.stderr.readline()
        addr = re.search(r"http://([0-9.]+:\d+)/", line).group(1)
        host, port = addr.split(":")
        conn = http.client.HTTPConnection(host, int(port))
        sent = retries = 0
        start = time.perf_counter()
        i = 0
        while sent < spans_wanted:
            body, n = bodies[i % len(bodies)]
            while True:
                conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                answer = conn.getresponse()
                answer.read()
                if answer.status == 200:
                    break
                if answer.status != 503:
                    sys.exit(f"collect answered {answer.status}")
                retries += 1
                time.sleep(0.005)
            sent += n
            i += 1
        conn.close()
        # SIGINT to flowaudit itself: /usr/bin/time, its parent, ignores it.
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            child = int(f.read().split()[0])
        os.kill(child, signal.SIGINT)
        rest = proc.stderr.read()
        proc.wait()
        elapsed = time.perf_counter() - start
        peak_kb = int(rest.strip().splitlines()[-1])
        with open(report) as f:
            statements = json.load(f)["summary"]["statements"]
        return sent, elapsed, peak_kb, retries, statements


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "release", "flowaudit")
    # Distinct trace ids across the whole run: each request its own batch number.
    bodies = [request(b) for b in range(args.spans // 1000 + 1)]
    rates, peaks = [], []
    for _ in range(args.runs):
        sent, elapsed, peak_kb, retries, statements = run_once(exe, args.spans, bodies)
        rates.append(sent / elapsed)
        peaks.append(peak_kb / 1024)
        print(f"{sent:,} spans ({statements:,} statements audited) in {elapsed:.2f} s: "
              f"{sent / elapsed:,.0f} spans/s, peak {peak_kb / 1024:.0f} MB, {retries} requests sent again")
        if statements != sent // 10 * 9:
            sys.exit(f"FAIL: {statements} statements audited, {sent // 10 * 9} sent")
    rate, peak = statistics.median(rates), max(peaks)
    ok_rate, ok_mem = rate >= 100_000, peak < 100
    print(f"collect on one core: median {rate:,.0f} spans/s over {args.runs} runs, peak {peak:.0f} MB")
    print(f"target: >= 100,000 spans/s: {'PASS' if ok_rate else 'FAIL'}")
    print(f"target: peak memory < 100 MB: {'PASS' if ok_mem else 'FAIL'}")
    sys.exit(0 if ok_rate and ok_mem else 1)


if __name__ == "__main__":
    main()
