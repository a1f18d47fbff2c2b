//! The trace viewer the demo collector serves at `/`: one self-contained page
//! (`viewer.html`, HTML + CSS + JS embedded in the binary, nothing fetched from elsewhere) and
//! the two JSON endpoints it polls:
//!
//! - `GET /api/traces`: one [`TraceSummary`] per trace, newest first;
//! - `GET /api/traces/{trace_id}`: one [`TraceView`], every span with its offset from the
//!   trace's start and its duration in milliseconds (computed here from the nanosecond
//!   timestamps, which JavaScript numbers cannot hold exactly).
//!
//! The page lists recent traces (root name, duration, span count, error mark) and draws the
//! selected one as a waterfall: bars on a time axis, nested by parent, coloured by service,
//! errors in red; clicking a span shows its attributes, events, status and resource. It polls
//! `/api/traces` every second, so new traces appear without a reload. `/?trace=ID&span=ID`
//! opens one trace with one span selected.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::span::{kind, status, AttrValue, RecordedEvent, RecordedSpan};

/// The page, served at `/`.
pub const PAGE: &str = include_str!("viewer.html");

/// How many traces `/api/traces` lists at most (the newest).
pub const MAX_LISTED: usize = 500;

/// One line of the trace list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceSummary {
    pub trace_id: String,
    /// Name of the root span (the earliest span without a parent in the trace; else the
    /// earliest span).
    pub root_name: String,
    /// `service.name` of the root span's resource.
    pub root_service: String,
    /// Start of the earliest span, milliseconds since the Unix epoch.
    pub start_unix_ms: f64,
    /// From the earliest start to the latest end, in milliseconds.
    pub duration_ms: f64,
    pub span_count: usize,
    /// Spans with status ERROR.
    pub error_count: usize,
    /// Resource `service.name`s, in order of first appearance.
    pub services: Vec<String>,
}

/// One span as the waterfall draws it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewSpan {
    pub span_id: String,
    /// Empty for a root (or when the parent is not in the trace: see `parent_missing`).
    pub parent_span_id: String,
    /// The span names a parent that has not arrived (drawn as a root).
    pub parent_missing: bool,
    pub name: String,
    /// `SERVER`, `CLIENT`, ...
    pub kind: &'static str,
    /// Resource `service.name`.
    pub service: String,
    /// Milliseconds from the trace's start.
    pub offset_ms: f64,
    pub duration_ms: f64,
    /// `UNSET`, `OK` or `ERROR`.
    pub status: &'static str,
    pub status_message: String,
    pub attributes: BTreeMap<String, AttrValue>,
    pub events: Vec<ViewEvent>,
    pub resource: BTreeMap<String, AttrValue>,
    pub scope: String,
    pub trace_state: String,
}

/// A span event, with its time relative to the trace's start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewEvent {
    pub name: String,
    pub offset_ms: f64,
    pub attributes: BTreeMap<String, AttrValue>,
}

/// One trace for the waterfall.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceView {
    pub summary: TraceSummary,
    /// In arrival order; the page builds the tree.
    pub spans: Vec<ViewSpan>,
}

fn status_name(code: i32) -> &'static str {
    match code {
        status::OK => "OK",
        status::ERROR => "ERROR",
        _ => "UNSET",
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1_000_000.0
}

fn summarize(trace_id: &str, spans: &[&RecordedSpan]) -> TraceSummary {
    let start = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.end_ns.max(s.start_ns))
        .max()
        .unwrap_or(start);
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let root = spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .min_by_key(|s| s.start_ns)
        .or_else(|| {
            spans
                .iter()
                .filter(|s| !ids.contains(s.parent_span_id.as_str()))
                .min_by_key(|s| s.start_ns)
        })
        .or_else(|| spans.iter().min_by_key(|s| s.start_ns));
    let mut services: Vec<String> = Vec::new();
    for s in spans {
        let name = s.service().unwrap_or("unknown").to_string();
        if !services.contains(&name) {
            services.push(name);
        }
    }
    TraceSummary {
        trace_id: trace_id.to_string(),
        root_name: root.map(|r| r.name.clone()).unwrap_or_default(),
        root_service: root
            .and_then(|r| r.service())
            .unwrap_or("unknown")
            .to_string(),
        start_unix_ms: ms(start),
        duration_ms: ms(end.saturating_sub(start)),
        span_count: spans.len(),
        error_count: spans
            .iter()
            .filter(|s| s.status_code == status::ERROR)
            .count(),
        services,
    }
}

/// Spans grouped by trace id, in order of each trace's first arrival.
fn by_trace(spans: &[RecordedSpan]) -> Vec<(&str, Vec<&RecordedSpan>)> {
    let mut order: Vec<(&str, Vec<&RecordedSpan>)> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for s in spans {
        match index.get(s.trace_id.as_str()) {
            Some(&i) => {
                if let Some(entry) = order.get_mut(i) {
                    entry.1.push(s);
                }
            }
            None => {
                index.insert(&s.trace_id, order.len());
                order.push((&s.trace_id, vec![s]));
            }
        }
    }
    order
}

/// The trace list: newest (latest start) first, at most [`MAX_LISTED`].
pub fn summaries(spans: &[RecordedSpan]) -> Vec<TraceSummary> {
    let mut list: Vec<TraceSummary> = by_trace(spans)
        .iter()
        .map(|(id, s)| summarize(id, s))
        .collect();
    list.sort_by(|a, b| b.start_unix_ms.total_cmp(&a.start_unix_ms));
    list.truncate(MAX_LISTED);
    list
}

fn view_event(e: &RecordedEvent, start: u64) -> ViewEvent {
    ViewEvent {
        name: e.name.clone(),
        offset_ms: ms(e.time_ns.saturating_sub(start)),
        attributes: e.attributes.clone(),
    }
}

/// One trace (id compared case-insensitively), or `None` when no span of it has arrived.
pub fn trace_view(spans: &[RecordedSpan], trace_id: &str) -> Option<TraceView> {
    let want = trace_id.to_ascii_lowercase();
    let mine: Vec<&RecordedSpan> = spans.iter().filter(|s| s.trace_id == want).collect();
    if mine.is_empty() {
        return None;
    }
    let summary = summarize(&want, &mine);
    let start = mine.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let ids: HashSet<&str> = mine.iter().map(|s| s.span_id.as_str()).collect();
    let view = mine
        .iter()
        .map(|s| {
            let missing = !s.parent_span_id.is_empty() && !ids.contains(s.parent_span_id.as_str());
            ViewSpan {
                span_id: s.span_id.clone(),
                parent_span_id: if missing {
                    String::new()
                } else {
                    s.parent_span_id.clone()
                },
                parent_missing: missing,
                name: s.name.clone(),
                kind: kind::name(s.kind),
                service: s.service().unwrap_or("unknown").to_string(),
                offset_ms: ms(s.start_ns.saturating_sub(start)),
                duration_ms: s.duration_ms(),
                status: status_name(s.status_code),
                status_message: s.status_message.clone(),
                attributes: s.attributes.clone(),
                events: s.events.iter().map(|e| view_event(e, start)).collect(),
                resource: s.resource.clone(),
                scope: if s.scope_version.is_empty() {
                    s.scope_name.clone()
                } else {
                    format!("{} {}", s.scope_name, s.scope_version)
                },
                trace_state: s.trace_state.clone(),
            }
        })
        .collect();
    Some(TraceView {
        summary,
        spans: view,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: &str, id: &str, parent: &str, name: &str, start: u64, end: u64) -> RecordedSpan {
        RecordedSpan {
            trace_id: trace.into(),
            span_id: id.into(),
            parent_span_id: parent.into(),
            trace_state: String::new(),
            name: name.into(),
            kind: 2,
            start_ns: start,
            end_ns: end,
            attributes: BTreeMap::new(),
            events: vec![],
            status_code: 0,
            status_message: String::new(),
            resource: [("service.name".to_string(), AttrValue::Str("gw".into()))].into(),
            scope_name: "gateway-tracing".into(),
            scope_version: "0.1.0".into(),
        }
    }

    #[test]
    fn summaries_are_newest_first_with_root_duration_and_errors() {
        let base = 1_700_000_000_000_000_000u64;
        let mut child = span(
            "a",
            "2",
            "1",
            "CLIENT x",
            base + 1_000_000,
            base + 4_000_000,
        );
        child.status_code = status::ERROR;
        let spans = vec![
            child,
            span("a", "1", "", "GET /a", base, base + 5_000_000),
            span("b", "3", "", "GET /b", base + 9_000_000, base + 10_000_000),
        ];
        let list = summaries(&spans);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].trace_id, "b");
        let a = &list[1];
        assert_eq!(a.root_name, "GET /a");
        assert_eq!(a.span_count, 2);
        assert_eq!(a.error_count, 1);
        assert!((a.duration_ms - 5.0).abs() < 1e-9);
        assert_eq!(a.services, vec!["gw".to_string()]);
    }

    #[test]
    fn trace_view_offsets_are_exact_and_orphans_become_roots() {
        let base = 1_764_000_000_123_456_789u64; // beyond f64's exact integers
        let mut child = span("t", "2", "1", "child", base + 1_500, base + 2_500);
        child.events.push(RecordedEvent {
            name: "call.start".into(),
            time_ns: base + 1_500,
            attributes: BTreeMap::new(),
        });
        let spans = vec![
            span("t", "1", "", "root", base, base + 10_000),
            child,
            span("t", "3", "9", "orphan", base + 100, base + 200),
        ];
        let v = trace_view(&spans, "T").expect("trace t");
        assert_eq!(v.spans.len(), 3);
        let c = &v.spans[1];
        assert!((c.offset_ms - 0.0015).abs() < 1e-12, "{}", c.offset_ms);
        assert!((c.duration_ms - 0.001).abs() < 1e-12);
        assert!((c.events[0].offset_ms - 0.0015).abs() < 1e-12);
        assert_eq!(c.kind, "SERVER");
        assert_eq!(c.status, "UNSET");
        assert_eq!(c.scope, "gateway-tracing 0.1.0");
        let o = &v.spans[2];
        assert!(o.parent_missing);
        assert_eq!(o.parent_span_id, "");
        assert_eq!(v.summary.root_name, "root");
        assert!(trace_view(&spans, "nope").is_none());
    }

    #[test]
    fn the_page_is_self_contained() {
        // Nothing fetched from elsewhere: no absolute URLs in src/href, no CDN, no imports.
        for bad in [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "href=\"//",
            "@import",
            "cdn",
        ] {
            assert!(!PAGE.contains(bad), "viewer.html contains {bad:?}");
        }
        assert!(PAGE.contains("/api/traces"));
    }
}
