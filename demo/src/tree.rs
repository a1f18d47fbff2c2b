//! Text rendering of received spans as one tree per trace.
//!
//! This module owns [`render`] (all traces) and [`render_trace`] (one
//! trace's spans): traces are ordered by their earliest root's start time,
//! children by start time, and spans whose parent was not received are shown
//! as extra roots with a note.

use std::collections::{BTreeMap, HashSet};

use crate::span::{kind, status, RecordedSpan};

/// Renders every trace found in `spans`, separated by blank lines.
pub fn render(spans: &[RecordedSpan]) -> String {
    let mut by_trace: BTreeMap<&str, Vec<&RecordedSpan>> = BTreeMap::new();
    for s in spans {
        by_trace.entry(s.trace_id.as_str()).or_default().push(s);
    }
    let mut traces: Vec<(u64, &str, Vec<&RecordedSpan>)> = by_trace
        .into_iter()
        .map(|(id, group)| (trace_sort_key(&group), id, group))
        .collect();
    traces.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    traces
        .iter()
        .map(|(_, id, group)| render_group(id, group))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Renders the spans of a single trace (spans of other traces are ignored).
pub fn render_trace(trace_id: &str, spans: &[RecordedSpan]) -> String {
    let group: Vec<&RecordedSpan> = spans
        .iter()
        .filter(|s| s.trace_id.eq_ignore_ascii_case(trace_id))
        .collect();
    render_group(&trace_id.to_ascii_lowercase(), &group)
}

/// Start time of the earliest root (or earliest span if there is no root).
fn trace_sort_key(group: &[&RecordedSpan]) -> u64 {
    let ids: HashSet<&str> = group.iter().map(|s| s.span_id.as_str()).collect();
    let roots = group
        .iter()
        .filter(|s| s.parent_span_id.is_empty() || !ids.contains(s.parent_span_id.as_str()));
    roots
        .map(|s| s.start_ns)
        .min()
        .or_else(|| group.iter().map(|s| s.start_ns).min())
        .unwrap_or(0)
}

fn render_group(trace_id: &str, group: &[&RecordedSpan]) -> String {
    let ids: HashSet<&str> = group.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: BTreeMap<&str, Vec<&RecordedSpan>> = BTreeMap::new();
    let mut roots: Vec<&RecordedSpan> = Vec::new();
    for s in group {
        if !s.parent_span_id.is_empty()
            && ids.contains(s.parent_span_id.as_str())
            && s.parent_span_id != s.span_id
        {
            children
                .entry(s.parent_span_id.as_str())
                .or_default()
                .push(s);
        } else {
            roots.push(s);
        }
    }
    let by_start = |a: &&RecordedSpan, b: &&RecordedSpan| {
        (a.start_ns, &a.span_id).cmp(&(b.start_ns, &b.span_id))
    };
    roots.sort_by(by_start);
    for list in children.values_mut() {
        list.sort_by(by_start);
    }

    let mut out = format!("trace {trace_id}\n");
    let mut seen: HashSet<&str> = HashSet::new();
    let n = roots.len();
    for (i, root) in roots.iter().enumerate() {
        write_node(&mut out, root, "", i + 1 == n, &children, &mut seen);
    }
    // Spans caught in a parent cycle are unreachable from any root: list them.
    for s in group {
        if !seen.contains(s.span_id.as_str()) {
            out.push_str(&format!("?  {} (unreachable: parent cycle)\n", line(s)));
        }
    }
    out
}

fn write_node<'a>(
    out: &mut String,
    span: &'a RecordedSpan,
    prefix: &str,
    last: bool,
    children: &BTreeMap<&str, Vec<&'a RecordedSpan>>,
    seen: &mut HashSet<&'a str>,
) {
    if !seen.insert(span.span_id.as_str()) {
        return;
    }
    let branch = if last { "└─ " } else { "├─ " };
    out.push_str(prefix);
    out.push_str(branch);
    // Only roots can have a parent that is missing from the set.
    out.push_str(&line_with_note(span, !prefix.is_empty()));
    out.push('\n');
    let child_prefix = format!("{prefix}{}", if last { "   " } else { "│  " });
    if let Some(kids) = children.get(span.span_id.as_str()) {
        let n = kids.len();
        for (i, kid) in kids.iter().enumerate() {
            write_node(out, kid, &child_prefix, i + 1 == n, children, seen);
        }
    }
}

/// One span's line, without tree decoration:
/// `NAME  [SERVICE] KIND 12.3ms STATUS [do=ID] [(parent X not received)]`.
pub fn line(s: &RecordedSpan) -> String {
    let service = s.service().unwrap_or("?");
    let status = match s.status_code {
        status::OK => "OK".to_string(),
        status::ERROR => match s.attr("error.type") {
            Some(t) => format!("ERROR({t})"),
            None => "ERROR".to_string(),
        },
        _ => "UNSET".to_string(),
    };
    let mut text = format!(
        "{}  [{}] {} {:.1}ms {}",
        s.name,
        service,
        kind::name(s.kind),
        s.duration_ms(),
        status
    );
    if let Some(id) = s.attr("durable_object.id") {
        text.push_str(&format!(" do={id}"));
    }
    text
}

/// Adds the "parent not received" note where the parent is missing from `group`.
fn line_with_note(s: &RecordedSpan, has_parent: bool) -> String {
    let mut text = line(s);
    if !s.parent_span_id.is_empty() && !has_parent {
        text.push_str(&format!(" (parent {} not received)", s.parent_span_id));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::AttrValue;

    #[allow(clippy::too_many_arguments)]
    fn span(
        trace: &str,
        id: &str,
        parent: &str,
        name: &str,
        svc: &str,
        k: i32,
        start_ms: u64,
        dur_ms: f64,
    ) -> RecordedSpan {
        RecordedSpan {
            trace_id: trace.into(),
            span_id: id.into(),
            parent_span_id: parent.into(),
            trace_state: String::new(),
            name: name.into(),
            kind: k,
            start_ns: start_ms * 1_000_000,
            end_ns: start_ms * 1_000_000 + (dur_ms * 1_000_000.0) as u64,
            attributes: Default::default(),
            events: vec![],
            status_code: status::OK,
            status_message: String::new(),
            resource: [("service.name".to_string(), AttrValue::Str(svc.into()))].into(),
            scope_name: String::new(),
            scope_version: String::new(),
        }
    }

    const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn renders_the_cart_flow() {
        let mut dobj = span(
            T,
            "b",
            "a",
            "CartDurableObject POST /cart/add",
            "ecomm-ms-gateway",
            kind::CLIENT,
            1,
            10.1,
        );
        dobj.attributes
            .insert("durable_object.id".into(), AttrValue::Str("c-42".into()));
        // Deliberately out of order.
        let spans = vec![
            span(
                T,
                "e",
                "c",
                "FULFILLMENT_SERVICE GET /shipping-options",
                "cart-service",
                kind::CLIENT,
                5,
                1.5,
            ),
            span(
                T,
                "d",
                "c",
                "PRODUCTS_SERVICE GET /products/:id",
                "cart-service",
                kind::CLIENT,
                3,
                2.0,
            ),
            span(
                T,
                "c",
                "b",
                "POST /cart/add",
                "cart-service",
                kind::SERVER,
                2,
                8.0,
            ),
            dobj,
            span(
                T,
                "a",
                "",
                "POST /api/cart/:cartId/add",
                "ecomm-ms-gateway",
                kind::SERVER,
                0,
                12.3,
            ),
        ];
        let expected = "\
trace 4bf92f3577b34da6a3ce929d0e0e4736
└─ POST /api/cart/:cartId/add  [ecomm-ms-gateway] SERVER 12.3ms OK
   └─ CartDurableObject POST /cart/add  [ecomm-ms-gateway] CLIENT 10.1ms OK do=c-42
      └─ POST /cart/add  [cart-service] SERVER 8.0ms OK
         ├─ PRODUCTS_SERVICE GET /products/:id  [cart-service] CLIENT 2.0ms OK
         └─ FULFILLMENT_SERVICE GET /shipping-options  [cart-service] CLIENT 1.5ms OK
";
        assert_eq!(render(&spans), expected);
        assert_eq!(render_trace(&T.to_uppercase(), &spans), expected);
    }

    #[test]
    fn orphans_status_and_trace_order() {
        let t2 = "00000000000000000000000000000002";
        let mut err = span(t2, "x", "", "GET /boom", "gw", kind::SERVER, 100, 1.0);
        err.status_code = status::ERROR;
        err.attributes
            .insert("error.type".into(), AttrValue::Str("503".into()));
        let mut unset = span(T, "o", "ffff", "orphan", "svc", kind::CLIENT, 50, 0.25);
        unset.status_code = status::UNSET;
        let spans = vec![
            err,
            unset,
            span(T, "r", "", "root", "svc", kind::SERVER, 10, 1.0),
        ];
        let out = render(&spans);
        let expected = "\
trace 4bf92f3577b34da6a3ce929d0e0e4736
├─ root  [svc] SERVER 1.0ms OK
└─ orphan  [svc] CLIENT 0.2ms UNSET (parent ffff not received)

trace 00000000000000000000000000000002
└─ GET /boom  [gw] SERVER 1.0ms ERROR(503)
";
        assert_eq!(out, expected);
    }

    #[test]
    fn parent_cycles_do_not_loop() {
        let spans = vec![
            span(T, "a", "b", "A", "s", kind::SERVER, 0, 1.0),
            span(T, "b", "a", "B", "s", kind::SERVER, 1, 1.0),
        ];
        let out = render(&spans);
        assert!(out.contains("parent cycle"), "{out}");
        assert_eq!(out.lines().count(), 3);
    }

    #[test]
    fn empty_input_renders_nothing() {
        assert_eq!(render(&[]), "");
    }
}
