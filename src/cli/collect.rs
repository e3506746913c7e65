//! `flowaudit collect --listen ADDR`: an OTLP/HTTP receiver. OpenTelemetry
//! database spans, as an application's SDK or an OpenTelemetry Collector's
//! `otlphttp` exporter sends them, are audited as they arrive (the
//! conversion is `analyze --input otlp-json`'s, [`crate::capture::otlp`]);
//! SIGINT or SIGTERM stops it and writes the report. It keeps the traces
//! still waiting for their root span and the audit's per-step state, not the
//! spans.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use super::AuditArgs;
use super::proxy::{runtime, stop_signal};
use crate::audit::Audit;
use crate::capture::otlp::receiver::{QUEUE, ReceiverStats, serve_connection};
use crate::capture::otlp::{Assembler, Options, StepFrom};
use crate::model::Event;

#[derive(Debug, Clone, Args)]
pub struct CollectArgs {
    /// Where to receive OTLP/HTTP (`POST /v1/traces`, protobuf or JSON, gzip
    /// or not); point an exporter's endpoint at http://ADDR. Loopback unless
    /// told otherwise.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4318")]
    pub listen: SocketAddr,
    /// Where a statement's step comes from, as for `analyze --step-from`:
    /// `attr:NAME` or `name:REGEX`, tried in order. Repeatable.
    #[arg(long, value_name = "RULE")]
    pub step_from: Vec<StepFrom>,
    /// Also write the statements received to FILE as a trace.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Audit without the rule files' [[invariant]]s (collect has no
    /// database to check them on).
    #[arg(long)]
    pub skip_invariants: bool,
    /// Pass a run that received no statement (otherwise exit 2: a gate that
    /// saw nothing proves nothing).
    #[arg(long)]
    pub allow_empty: bool,
    #[command(flatten)]
    pub audit: AuditArgs,
}

pub fn run(args: &CollectArgs) -> anyhow::Result<u8> {
    let config = args.audit.load_rules()?;
    super::require_invariant_database(&config, None, args.skip_invariants)?;
    let baseline = args.audit.load_baseline()?;
    let mut audit = Audit::with_baseline(&config, baseline.as_ref())
        .context("invalid rule settings")?
        .with_params(args.audit.params)
        .with_timeline(args.audit.format == crate::report::Format::Html);
    let mut trace = match &args.trace {
        Some(path) => Some(crate::trace::TraceWriter::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write the trace to {}", path.display()))?,
        ))),
        None => None,
    };
    let options = Options {
        step_from: args.step_from.clone(),
        ..Options::default()
    };
    // The audit runs on a thread of its own, fed by a bounded queue: the
    // receiver answers 503 rather than queue without end.
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let auditor = std::thread::Builder::new()
        .name("flowaudit-collect".into())
        .spawn(move || -> std::io::Result<(Audit, Assembler)> {
            let mut assembler = Assembler::new(options);
            let mut events: Vec<Event> = Vec::new();
            let mut ended: Vec<u64> = Vec::new();
            let mut feed = |assembler: &mut Assembler, audit: &mut Audit| -> std::io::Result<()> {
                assembler.drain(&mut events);
                for event in events.drain(..) {
                    if let Some(t) = trace.as_mut() {
                        t.write(&event)?;
                    }
                    audit.push(event);
                }
                // A request's connection ends with its trace: the audit
                // keeps the requests still open, not every one received.
                assembler.take_ended(&mut ended);
                for conn in ended.drain(..) {
                    audit.connection_closed(conn);
                }
                Ok(())
            };
            while let Ok(request) = rx.recv() {
                let request: crate::capture::otlp::json::ExportTraceServiceRequest = request;
                for resource_spans in request.resource_spans {
                    assembler.push(resource_spans, None);
                }
                feed(&mut assembler, &mut audit)?;
            }
            assembler.finish();
            feed(&mut assembler, &mut audit)?;
            if let Some(mut t) = trace {
                t.flush()?;
            }
            Ok((audit, assembler))
        })
        .context("cannot start the auditing thread")?;
    let stats = Arc::new(ReceiverStats::default());
    let served = runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}\n  hint: another program (an OpenTelemetry Collector?) \
                     may use that port; choose another with --listen",
                    args.listen
                )
            })?;
        let addr = listener.local_addr()?;
        // The handlers first: a stop that comes as soon as the line below is
        // read must find them.
        let stop = stop_signal();
        if !addr.ip().is_loopback() {
            eprintln!(
                "flowaudit: warning: listening on {addr}, not on loopback: whoever reaches this \
                 address can send spans to the audit"
            );
        }
        eprintln!(
            "flowaudit: receiving OTLP/HTTP traces on http://{addr}/v1/traces; point the \
             exporter's endpoint at http://{addr}; Ctrl-C stops and reports"
        );
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    tokio::spawn(serve_connection(stream, tx.clone(), stats.clone()));
                }
            }
        }
        Ok::<_, anyhow::Error>(addr)
    });
    // Every sender gone (the runtime and its connections dropped with it):
    // the auditing thread finishes what it holds.
    drop(tx);
    let (audit, assembler) = auditor
        .join()
        .map_err(|_| anyhow::anyhow!("the auditing thread panicked"))?
        .context("cannot write the trace")?;
    let addr = served?;
    let s = assembler.stats();
    if s.statements == 0 && !args.allow_empty {
        anyhow::bail!(
            "no statement was received: {} spans arrived, {} of them database spans\n  hint: \
             point the exporter at http://{addr} (OTEL_EXPORTER_OTLP_ENDPOINT), check that the \
             database instrumentation is on; --allow-empty passes a run without statements",
            s.spans,
            s.database_spans
        );
    }
    let mut report = audit.finish();
    report.notes.extend(stats.notes(addr));
    report.notes.push(format!(
        "collect: {} spans, {} database spans, {} statements; {} traces closed by their root, {} \
         without it at the stop, {} handed out early (more than {} open)",
        s.spans,
        s.database_spans,
        s.statements,
        s.traces_closed,
        s.traces_unclosed,
        s.traces_evicted,
        assembler.max_open_traces()
    ));
    if s.late_spans > 0 {
        report.notes.push(format!(
            "collect: {} spans arrived after their trace had been handed out (more than {} traces \
             found their root in between): audited without the spans around them",
            s.late_spans,
            assembler.max_rooted_traces()
        ));
    }
    if s.cursor_fetches_folded > 0 {
        report.notes.push(format!(
            "collect: {} asyncpg cursor fetches counted with the statement whose portal they went \
             on reading",
            s.cursor_fetches_folded
        ));
    }
    args.audit.emit(&mut report)
}
