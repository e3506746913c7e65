"""psycopg_shop.py's or asyncpg_shop.py's journey, traced by OpenTelemetry.

Usage: python otel_shop.py [--app psycopg|asyncpg] --variant shipped|fixed
       --counts FILE (--otlp FILE | --otlp-http ENDPOINT)
with the database in DATABASE_URL (postgres://...). tests/otlp.rs runs it.

The application is psycopg_shop.py (the default) or asyncpg_shop.py,
unchanged; this wrapper adds what an instrumented service has: the
OpenTelemetry SDK with opentelemetry-instrumentation-psycopg (a span per
execute()/executemany(); psycopg's own BEGIN and commit() are none) or
opentelemetry-instrumentation-asyncpg (a span per execute(), fetch*() and
cursor fetch; asyncpg's conn.transaction() sends BEGIN and COMMIT through
execute(), so they are spans), the parameters recorded with
capture_parameters, and, around each step of the
journey, a span of its own as a web framework's instrumentation would start
for a request: a root span `POST /<step>` with `http.route` `/<step>`, so that
each step is a trace. The service is named `shop` (the resource's
`service.name`).

The exporter writes what the OpenTelemetry Collector's file exporter writes:
one ExportTraceServiceRequest in OTLP JSON a line, encoded by the OTLP
exporter's own encoder (`encode_spans`), turned into JSON by protobuf's
`MessageToDict`, with the trace and span ids as hex (the OTLP JSON encoding's
exception to protobuf's base64). Spans are batched a few at a time and each
is exported when it ends, so a step's statements reach the file before the
step's own span, as they reach a Collector.

OTEL_SEMCONV_STABILITY_OPT_IN=database makes the instrumentation write the
current database conventions (db.query.text, db.system.name); without it,
the older ones (db.statement, db.system).
"""

import argparse
import base64
import json
import os
import sys

from google.protobuf.json_format import MessageToDict
from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def hex_ids(value):
    """The OTLP JSON encoding: trace and span ids are hex, not base64."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(item, str):
                value[key] = base64.b64decode(item).hex()
            else:
                hex_ids(item)
    elif isinstance(value, list):
        for item in value:
            hex_ids(item)
    return value


class OtlpJsonFile(SpanExporter):
    """The Collector's file exporter: a request of OTLP JSON per line."""

    def __init__(self, path):
        self.out = open(path, "w", encoding="utf-8")

    def export(self, spans):
        request = MessageToDict(encode_spans(spans))
        self.out.write(json.dumps(hex_ids(request), separators=(",", ":")))
        self.out.write("\n")
        self.out.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self):
        self.out.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=("psycopg", "asyncpg"), default="psycopg")
    parser.add_argument("--variant", choices=("shipped", "fixed"), required=True)
    parser.add_argument("--counts", required=True, metavar="FILE")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--otlp", metavar="FILE")
    # The SDK's own OTLP/HTTP exporter (protobuf), as a service sends to a
    # Collector or to `flowaudit collect`: ENDPOINT is http://host:port.
    where.add_argument("--otlp-http", metavar="ENDPOINT")
    args = parser.parse_args()

    if args.otlp_http:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=args.otlp_http.rstrip("/") + "/v1/traces")
    else:
        exporter = OtlpJsonFile(args.otlp)
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=8))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("otel_shop")
    current = {}

    def end_step():
        if "span" in current:
            context.detach(current.pop("token"))
            current.pop("span").end()

    def start_step(name):
        """Each step is a request of its own: a new trace."""
        end_step()
        span = tracer.start_span(
            f"POST /{name}",
            context=trace.set_span_in_context(trace.INVALID_SPAN),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": "POST", "http.route": f"/{name}"},
        )
        current["span"] = span
        current["token"] = context.attach(trace.set_span_in_context(span))

    sys.argv = [sys.argv[0], "--variant", args.variant, "--counts", args.counts]
    if args.app == "asyncpg":
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        AsyncPGInstrumentor(capture_parameters=True).instrument(tracer_provider=provider)
        import asyncpg_shop

        original_begin = asyncpg_shop.Db.begin_step

        async def begin_step(self, name):
            # Attached in the journey's own task, the step's span is the
            # parent of every statement the journey awaits after it.
            start_step(name)
            await original_begin(self, name)

        original_journey = asyncpg_shop.journey

        async def journey(db, shipped):
            try:
                return await original_journey(db, shipped)
            finally:
                end_step()  # in the task whose context holds the span

        asyncpg_shop.Db.begin_step = begin_step
        asyncpg_shop.journey = journey
        shop = asyncpg_shop
    else:
        PsycopgInstrumentor().instrument(tracer_provider=provider, capture_parameters=True)
        import psycopg_shop

        original_step = psycopg_shop.step

        def step(conn, name):
            start_step(name)
            original_step(conn, name)

        psycopg_shop.step = step
        shop = psycopg_shop
    try:
        code = shop.main()
    finally:
        end_step()
        provider.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
