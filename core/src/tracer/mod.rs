//! The tracer: what happens to one HTTP request. At request headers it extracts the parent,
//! decides sampling, allocates span ids, picks the upstream cluster's target and injects
//! `traceparent`/`tracestate` upstream ([`start`], in [`start`](mod@start)). At log time, when Envoy has the response
//! code, flags and upstream address, it builds the finished SERVER and CLIENT spans
//! ([`finish`], in [`spans`]).
//!
//! Which spans exist depends on [`Mode`]: a gateway emits a SERVER span and a CLIENT child per
//! upstream call; an inbound sidecar only the SERVER span; an outbound sidecar only the CLIENT.
//! In the upstream-filter placement ([`attempt`]) each attempt is a request of its own: one
//! CLIENT span per attempt, [`start_attempt`] at its request headers, [`attempt_completion`]
//! when Envoy destroys it.
//!
//! Files: [`stream`](mod@stream) (one stream's callbacks, whatever the placement: what a host
//! glue drives), [`start`](mod@start) (request headers), [`completion`] (log-phase reads), [`spans`]
//! (pure span building), [`calls`] (per-target call metrics), [`attempt`] (the
//! upstream-filter placement).

mod attempt;
pub mod calls;
mod completion;
mod headers;
mod placement;
mod request;
mod spans;
mod start;
mod stream;
#[cfg(test)]
mod tests;

pub use attempt::{attempt_completion, start_attempt, AttemptBook};
pub use completion::Completion;
pub use placement::Attempt;
pub use request::{ActiveRequest, ClientCall};
pub use spans::finish;
pub use start::start;
pub use stream::{Finished, Placement, Stream};

/// The capacity a glue gives the buffer [`finish`] writes a request's spans into: a routed
/// request's SERVER and CLIENT spans with the default attributes (about 1.2 KB) fit without a
/// reallocation (tested in `tests/stream.rs`); bigger ones (many captured headers) grow it.
pub const SPANS_BUFFER_CAPACITY: usize = 2048;
