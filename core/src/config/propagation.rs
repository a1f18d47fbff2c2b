//! The propagation fields (top level): `propagators` (which trace context formats, in
//! extraction priority order), `trust` (continue or link incoming context),
//! `untrusted_baggage` and `response_trace_header`. The rules themselves live in [`crate::propagation`].

use super::{err, structural, ConfigError};
use crate::propagation::{Propagator, ResponseTraceHeader, Settings, Trust, UntrustedBaggage};

/// Validates the propagation fields. `propagators`: `None` is the default
/// (`["tracecontext"]`); otherwise a non-empty list of known `OTEL_PROPAGATORS` names, each
/// at most once.
pub(super) fn validate(
    propagators: Option<Vec<String>>,
    trust: Trust,
    untrusted_baggage: Option<UntrustedBaggage>,
    response_trace_header: ResponseTraceHeader,
) -> Result<Settings, ConfigError> {
    if untrusted_baggage.is_some() && trust != Trust::Untrusted {
        return Err(structural(
            "untrusted_baggage",
            "only means something with \"trust\": \"untrusted\" (a trusted hop passes baggage on untouched)",
        ));
    }
    let defaults = Settings::default();
    let propagators = match propagators {
        None => defaults.propagators,
        Some(names) => {
            if names.is_empty() {
                return Err(structural(
                    "propagators",
                    "must not be empty (leave it out for the default [\"tracecontext\"])",
                ));
            }
            let mut out: Vec<Propagator> = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let field = format!("propagators[{i}]");
                let p = Propagator::from_name(name).ok_or_else(|| {
                    err(
                        field.clone(),
                        name.clone(),
                        "unknown propagator; expected tracecontext, b3 or b3multi",
                    )
                })?;
                if out.contains(&p) {
                    return Err(err(field, name.clone(), "listed twice"));
                }
                out.push(p);
            }
            out
        }
    };
    Ok(Settings {
        propagators,
        trust,
        untrusted_baggage: untrusted_baggage.unwrap_or_default(),
        response_trace_header,
    })
}
