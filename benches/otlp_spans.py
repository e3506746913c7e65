"""Writes a synthetic OTLP JSON file (the Collector file exporter's format) for timing
`flowaudit analyze --input otlp-json`: N lines, each one trace of 10 database spans
and its root span. Usage: python3 benches/otlp_spans.py N roots|noroots FILE
(noroots: every root points at a parent that never arrives, so all traces stay
open and the assembler's cap of open traces is what bounds memory)."""
import json, sys
n = int(sys.argv[1]); roots = sys.argv[2] == "roots"
out = open(sys.argv[3], "w")
t0 = 1_700_000_000_000_000_000
for r in range(n):
    tid = "%032x" % (r + 1)
    spans = []
    for i in range(10):
        s = t0 + r * 1_000_000 + i * 1000
        spans.append({"traceId": tid, "spanId": "%016x" % (r * 16 + i + 2), "parentSpanId": "%016x" % (r * 16 + 1),
            "name": "SELECT", "startTimeUnixNano": str(s), "endTimeUnixNano": str(s + 500),
            "attributes": [{"key": "db.system", "value": {"stringValue": "postgresql"}},
                           {"key": "db.statement", "value": {"stringValue": "SELECT stock FROM inventory WHERE product_id = %s"}},
                           {"key": "db.statement.parameters", "value": {"stringValue": "(%d,)" % i}}]})
    spans.append({"traceId": tid, "spanId": "%016x" % (r * 16 + 1), "parentSpanId": "" if roots else "ff", "name": "GET /browse",
        "startTimeUnixNano": str(t0 + r * 1_000_000), "endTimeUnixNano": str(t0 + r * 1_000_000 + 20000),
        "attributes": [{"key": "http.route", "value": {"stringValue": "/browse"}}]})
    out.write(json.dumps({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
        "scopeSpans": [{"scope": {"name": "g"}, "spans": spans}]}]}) + "\n")
