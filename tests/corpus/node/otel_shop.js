#!/usr/bin/env node
// pg_shop.js's or mysql2_shop.js's journey, traced by OpenTelemetry: the Node
// SDK with @opentelemetry/instrumentation-pg or -mysql2, exporting to an OTLP
// JSON file or over OTLP/HTTP. tests/otlp.rs runs it.
//
//   node otel_shop.js [--app pg|mysql2] --variant shipped|fixed --counts FILE
//                     (--otlp FILE | --otlp-http ENDPOINT)   (DATABASE_URL=postgres://… or mysql://…)
//
// The application is pg_shop.js (the default) or mysql2_shop.js, unchanged;
// this wrapper adds what an instrumented Node service has: the SDK's tracer
// provider (its context manager carries the active span across `await`),
// the driver's instrumentation and, around each step of the journey, a span
// of its own as an HTTP framework's instrumentation would start for a
// request: a root span `POST /<step>` with `http.route` `/<step>`, so that
// each step is a trace. The service is named `shop`.
//
// - pg: a span per query() call, BEGIN and COMMIT included (they are
//   queries with pg), the bind values recorded with
//   enhancedDatabaseReporting.
// - mysql2: a span per query() and execute() call of the connection, with
//   the values formatted into the statement's text; beginTransaction() and
//   commit() send START TRANSACTION and COMMIT through query(), so they are
//   spans too.
//
// --otlp writes what the OpenTelemetry Collector's file exporter writes: an
// ExportTraceServiceRequest in OTLP JSON a line, encoded by the SDK's own
// JSON serializer (the one its OTLP/HTTP exporter sends). --otlp-http sends
// with the SDK's OTLP/HTTP exporter (JSON), as a service sends to a
// Collector or to `flowaudit collect`: ENDPOINT is http://host:port.
//
// OTEL_SEMCONV_STABILITY_OPT_IN=database makes the instrumentations write the
// current database conventions (db.query.text, db.system.name); without it,
// the older ones (db.statement, db.system).
'use strict';

const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { context, trace, SpanKind, ROOT_CONTEXT } = require('@opentelemetry/api');
const { ExportResultCode } = require('@opentelemetry/core');
const { registerInstrumentations } = require('@opentelemetry/instrumentation');
const { JsonTraceSerializer } = require('@opentelemetry/otlp-transformer');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');

// The Collector's file exporter: a request of OTLP JSON per line.
class OtlpJsonFile {
    constructor(path) {
        this.fd = fs.openSync(path, 'w');
    }

    export(spans, done) {
        try {
            fs.writeSync(this.fd, Buffer.from(JsonTraceSerializer.serializeRequest(spans)));
            fs.writeSync(this.fd, '\n');
            done({ code: ExportResultCode.SUCCESS });
        } catch (error) {
            done({ code: ExportResultCode.FAILED, error });
        }
    }

    async shutdown() {
        if (this.fd !== null) {
            fs.closeSync(this.fd);
            this.fd = null;
        }
    }

    async forceFlush() {}
}

function exporterFor(args) {
    if (args['otlp-http']) {
        const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');
        return new OTLPTraceExporter({ url: `${args['otlp-http'].replace(/\/$/, '')}/v1/traces` });
    }
    return new OtlpJsonFile(args.otlp);
}

async function run() {
    const { values: args } = parseArgs({
        options: {
            app: { type: 'string', default: 'pg' },
            variant: { type: 'string' },
            counts: { type: 'string' },
            otlp: { type: 'string' },
            'otlp-http': { type: 'string' },
        },
    });
    if (!['pg', 'mysql2'].includes(args.app) || !args.variant || !args.counts || !args.otlp === !args['otlp-http']) {
        console.error(
            'usage: node otel_shop.js [--app pg|mysql2] --variant shipped|fixed --counts FILE (--otlp FILE | --otlp-http ENDPOINT)',
        );
        return 2;
    }

    const provider = new NodeTracerProvider({
        resource: resourceFromAttributes({ 'service.name': 'shop' }),
        // Small batches, exported soon: a step's statements reach the file
        // before the step's own span, as they reach a Collector.
        spanProcessors: [
            new BatchSpanProcessor(exporterFor(args), { maxExportBatchSize: 8, scheduledDelayMillis: 20 }),
        ],
    });
    provider.register();
    let instrumentation;
    if (args.app === 'pg') {
        const { PgInstrumentation } = require('@opentelemetry/instrumentation-pg');
        instrumentation = new PgInstrumentation({ enhancedDatabaseReporting: true });
    } else {
        const { MySQL2Instrumentation } = require('@opentelemetry/instrumentation-mysql2');
        instrumentation = new MySQL2Instrumentation();
    }
    registerInstrumentations({ tracerProvider: provider, instrumentations: [instrumentation] });
    // Only now: the instrumentation patches the driver as the app requires it.
    const shop = require(`./${args.app}_shop.js`);
    const tracer = trace.getTracer('otel_shop');

    // Each step is a request of its own: a new trace.
    const aroundStep = (name, work) => {
        const span = tracer.startSpan(
            `POST /${name}`,
            {
                kind: SpanKind.SERVER,
                attributes: { 'http.request.method': 'POST', 'http.route': `/${name}` },
            },
            ROOT_CONTEXT,
        );
        return context.with(trace.setSpan(ROOT_CONTEXT, span), async () => {
            try {
                return await work();
            } finally {
                span.end();
            }
        });
    };

    try {
        return await shop.main({
            aroundStep,
            argv: ['--variant', args.variant, '--counts', args.counts],
        });
    } finally {
        // A service runs on after a request, and its spans go out batch
        // after batch as the processor's timer fires. This process ends
        // right after its last request, and the SDK's shutdown sends all it
        // still holds in concurrent requests, which may arrive in any order;
        // waiting for the timer first sends them as a running service does.
        // (tests/otlp.rs tests a request's own span arriving first on its
        // own, with the file.)
        await new Promise((resolve) => setTimeout(resolve, 500));
        await provider.shutdown();
    }
}

run().then(
    (status) => {
        process.exitCode = status;
    },
    (err) => {
        console.error(`otel_shop: ${err.stack ?? err}`);
        process.exitCode = 1;
    },
);
