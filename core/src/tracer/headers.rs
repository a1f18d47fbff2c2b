//! The header allowlists (`request_headers`, `response_headers`): which values become
//! `http.{request,response}.header.<name>` attributes, with redaction.

use crate::config::{Config, REDACTED};
use crate::host::HeaderMap;

/// Values of the allow-listed headers in `names` present in `headers` (case-insensitive,
/// duplicates kept in order); values of headers in `config.redact_headers` become
/// [`REDACTED`], and values that are not UTF-8 are recorded lossily.
pub(crate) fn capture_headers(
    config: &Config,
    names: &[String],
    headers: &HeaderMap,
) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let values: Vec<String> = headers
            .get_all(name)
            .map(|v| {
                if config.redact_headers.contains(name) {
                    REDACTED.to_string()
                } else {
                    String::from_utf8_lossy(v).into_owned()
                }
            })
            .collect();
        if !values.is_empty() {
            out.push((i, values));
        }
    }
    out
}
