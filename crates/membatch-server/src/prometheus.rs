//! `/metrics` in the Prometheus text format.
//!
//! The service already keeps every counter and histogram
//! ([`ServiceMetrics`]); a metrics registry crate would hold a second copy
//! of each and need them mirrored on every request. The exposition format
//! itself is a few lines per metric, so it is written here, from the
//! snapshot, when scraped.

use std::collections::BTreeMap;
use std::fmt::Write;

use membatch::service::{Histogram, ServiceMetrics, WorkCounts};
use membatch::PressureLevel;

/// HTTP responses by route and status, kept by the router.
pub(crate) type HttpCounts = BTreeMap<(String, u16), u64>;

struct Out(String);

impl Out {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn value(&mut self, name: &str, labels: &str, v: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {v}");
        }
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.header(name, "counter", help);
        self.value(name, "", v);
    }

    fn gauge(&mut self, name: &str, help: &str, v: impl std::fmt::Display) {
        self.header(name, "gauge", help);
        self.value(name, "", v);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.header(name, "histogram", help);
        let mut cumulative = 0;
        for (bound, count) in h.bounds.iter().zip(&h.counts) {
            cumulative += count;
            self.value(
                &format!("{name}_bucket"),
                &format!("le=\"{bound}\""),
                cumulative,
            );
        }
        self.value(&format!("{name}_bucket"), "le=\"+Inf\"", h.count);
        self.value(&format!("{name}_sum"), "", h.sum);
        self.value(&format!("{name}_count"), "", h.count);
    }
}

/// The exposition text of a service snapshot and the HTTP counts.
pub(crate) fn render(m: &ServiceMetrics, http: &HttpCounts) -> String {
    let mut o = Out(String::with_capacity(8 << 10));
    o.header(
        "membatch_http_responses_total",
        "counter",
        "HTTP responses by route and status code.",
    );
    for ((route, status), n) in http {
        o.value(
            "membatch_http_responses_total",
            &format!("route=\"{route}\",status=\"{status}\""),
            n,
        );
    }
    o.header(
        "membatch_requests_total",
        "counter",
        "Requests (embeddings and reranks) by outcome: accepted into the queue, then completed, failed or cancelled by the caller.",
    );
    for (outcome, n) in [
        ("accepted", m.accepted),
        ("completed", m.completed),
        ("failed", m.failed),
        ("cancelled", m.cancelled),
    ] {
        o.value(
            "membatch_requests_total",
            &format!("outcome=\"{outcome}\""),
            n,
        );
    }
    for (name, help, pick) in [
        (
            "membatch_kind_requests_total",
            "Requests accepted, by kind.",
            (|w: &WorkCounts| w.requests) as fn(&WorkCounts) -> u64,
        ),
        (
            "membatch_kind_batches_total",
            "Batches run, by kind.",
            |w: &WorkCounts| w.batches,
        ),
        (
            "membatch_kind_texts_total",
            "Texts embedded or (query, document) pairs scored, by kind.",
            |w: &WorkCounts| w.texts,
        ),
        (
            "membatch_kind_tokens_total",
            "Tokens run, by kind.",
            |w: &WorkCounts| w.tokens,
        ),
    ] {
        o.header(name, "counter", help);
        for (kind, counts) in [("embed", &m.embeddings), ("rerank", &m.reranks)] {
            o.value(name, &format!("kind=\"{kind}\""), pick(counts));
        }
    }
    o.header(
        "membatch_request_refusals_total",
        "counter",
        "Requests refused at admission, by reason.",
    );
    for (reason, n) in [
        ("overloaded", m.refused.overloaded),
        ("memory_critical", m.refused.memory_critical),
        ("too_large", m.refused.too_large),
        ("text_too_long", m.refused.text_too_long),
        ("closed", m.refused.closed),
    ] {
        o.value(
            "membatch_request_refusals_total",
            &format!("reason=\"{reason}\""),
            n,
        );
    }
    o.gauge(
        "membatch_queue_requests",
        "Requests waiting for a batch.",
        m.queued_requests,
    );
    o.gauge(
        "membatch_queue_tokens",
        "Tokens waiting for a batch.",
        m.queued_tokens,
    );
    o.counter("membatch_batches_total", "Batches run.", m.batches);
    o.counter("membatch_texts_total", "Texts embedded.", m.texts);
    o.counter("membatch_tokens_total", "Tokens embedded.", m.tokens);
    o.counter(
        "membatch_panics_total",
        "Panics of the embedder, contained.",
        m.panics,
    );
    o.counter("membatch_unloads_total", "Model unloads.", m.unloads);
    o.gauge(
        "membatch_batch_size",
        "The batch size the adaptive rule allows next.",
        m.batch_size,
    );
    o.histogram("membatch_batch_texts", "Texts per batch.", &m.batch_texts);
    o.histogram(
        "membatch_batch_tokens",
        "Tokens per batch.",
        &m.batch_tokens,
    );
    o.histogram(
        "membatch_batch_requests",
        "Requests with texts in each batch.",
        &m.batch_requests,
    );
    o.histogram(
        "membatch_queue_duration_seconds",
        "From a request's arrival to its first batch.",
        &m.queue_seconds,
    );
    o.histogram(
        "membatch_inference_duration_seconds",
        "One batch's forward pass.",
        &m.inference_seconds,
    );
    let r = &m.memory;
    o.gauge(
        "membatch_memory_limit_bytes",
        "The effective memory limit: the smaller of physical memory and the cgroup limit.",
        r.snapshot.effective_limit_bytes(),
    );
    o.gauge(
        "membatch_memory_usage_bytes",
        "The figure compared with the budget (cgroup working set, else process RSS).",
        r.figure_bytes,
    );
    o.gauge(
        "membatch_memory_budget_bytes",
        "The memory budget.",
        r.budget_bytes,
    );
    o.gauge(
        "membatch_memory_rss_bytes",
        "The process's resident set size.",
        r.snapshot.rss_bytes.unwrap_or(0),
    );
    let level = match r.level {
        PressureLevel::Normal => 0,
        PressureLevel::Cautious => 1,
        PressureLevel::Degraded => 2,
        PressureLevel::Critical => 3,
    };
    o.gauge(
        "membatch_memory_pressure_level",
        "Memory pressure: 0 normal, 1 cautious, 2 degraded, 3 critical.",
        level,
    );
    o.header(
        "membatch_model_state",
        "gauge",
        "1 for the model's current state.",
    );
    for state in ["unloaded", "loading", "loaded", "failed"] {
        o.value(
            "membatch_model_state",
            &format!("state=\"{state}\""),
            u8::from(m.model.as_str() == state),
        );
    }
    o.gauge(
        "membatch_serving",
        "1 while the worker serves, 0 once it failed or shut down.",
        u8::from(m.serving),
    );
    o.0
}
