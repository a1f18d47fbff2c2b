//! What the exporter holds: the queue of encoded span runs waiting for a batch, the batches
//! awaiting a retry, and the byte budget (`exporter.max_queue_bytes`) over everything held
//! (queued, awaiting retry, in flight). When a push does not fit, the *newest* spans (that push)
//! are refused: what is queued is older and already paid for (the OpenTelemetry SDK's
//! `BatchSpanProcessor` drops new spans when its queue is full, too).
//!
//! A batch is cut at `max_export_batch_size` spans or `max_export_bytes` encoded bytes,
//! whichever comes first (whole pushes only, but never empty: a push bigger than the byte
//! bound goes alone). A batch the collector finds too large (413) is [`Batch::split`] in two.

use std::collections::VecDeque;

/// A full queue is reported as having room again once it holds at most 1/this of
/// `max_queue_bytes`.
pub const QUEUE_ROOM_AGAIN_DIVISOR: usize = 2;

/// A run of encoded spans on its way to the collector.
pub(super) struct Batch {
    /// The encoded span runs with their span counts; the request body is built from them
    /// when the batch is sent (so a batch can be split, and an in-flight one holds no body).
    pub(super) runs: Vec<(Vec<u8>, usize)>,
    pub(super) spans: usize,
    /// Encoded span bytes (what the queue budget counts).
    pub(super) bytes: usize,
    /// When it was first sent; retries stop `retry.max_elapsed` after this.
    pub(super) first_sent_ns: Option<u64>,
}

impl Batch {
    /// A batch of these runs, not sent yet.
    pub(super) fn new(runs: Vec<(Vec<u8>, usize)>) -> Batch {
        let spans = runs.iter().map(|(_, n)| n).sum();
        let bytes = runs.iter().map(|(r, _)| r.len()).sum();
        Batch {
            runs,
            spans,
            bytes,
            first_sent_ns: None,
        }
    }

    /// Splits a batch of two or more spans into two halves of about equal bytes (whole runs
    /// when there are several; a single run into its spans), each keeping the first-send
    /// time. `Err(self)` for a single span, which cannot be split.
    pub(super) fn split(self) -> Result<(Batch, Batch), Batch> {
        if self.spans < 2 {
            return Err(self);
        }
        let runs: Vec<(Vec<u8>, usize)> = if self.runs.len() >= 2 {
            self.runs
        } else {
            let whole: Vec<u8> = self
                .runs
                .iter()
                .flat_map(|(r, _)| r.iter().copied())
                .collect();
            crate::otlp::span_fields(&whole)
                .into_iter()
                .map(|f| (f.to_vec(), 1))
                .collect()
        };
        if runs.len() < 2 {
            // An unparsable run of several spans: nothing to split at.
            let mut whole = Batch::new(runs);
            whole.first_sent_ns = self.first_sent_ns;
            return Err(whole);
        }
        let total: usize = runs.iter().map(|(r, _)| r.len()).sum();
        let mut at = 1;
        let mut acc = runs.first().map_or(0, |(r, _)| r.len());
        while at < runs.len() - 1 && acc * 2 < total {
            acc += runs.get(at).map_or(0, |(r, _)| r.len());
            at += 1;
        }
        let mut first = runs;
        let second = first.split_off(at);
        let (mut a, mut b) = (Batch::new(first), Batch::new(second));
        a.first_sent_ns = self.first_sent_ns;
        b.first_sent_ns = self.first_sent_ns;
        Ok((a, b))
    }
}

/// What became of a push.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admitted {
    /// Queued. `room_again`: the queue had been full and is down to the hysteresis mark; this
    /// many spans were refused meanwhile.
    Queued { room_again: Option<u64> },
    /// Refused for lack of room; `first`: the first refusal since the queue filled up.
    Refused { first: bool },
}

pub(super) struct Queue {
    budget: usize,
    max_batch: usize,
    /// `max_export_bytes`: a batch is cut before it would hold more encoded bytes.
    max_batch_bytes: usize,
    /// Encoded span runs awaiting export, with their span counts.
    runs: VecDeque<(Vec<u8>, usize)>,
    queued_spans: usize,
    queued_bytes: usize,
    /// Batches that failed retryably, oldest first; sent before the queue.
    retry: VecDeque<Batch>,
    /// Encoded span bytes held: queued + retry + in flight.
    held_bytes: usize,
    held_spans: usize,
    /// Spans refused since the queue became full; `Some` while full.
    full: Option<u64>,
}

impl Queue {
    pub(super) fn new(max_queue_bytes: u64, max_batch: usize, max_batch_bytes: u64) -> Queue {
        Queue {
            budget: usize::try_from(max_queue_bytes).unwrap_or(usize::MAX),
            max_batch,
            max_batch_bytes: usize::try_from(max_batch_bytes).unwrap_or(usize::MAX),
            runs: VecDeque::new(),
            queued_spans: 0,
            queued_bytes: 0,
            retry: VecDeque::new(),
            held_bytes: 0,
            held_spans: 0,
            full: None,
        }
    }

    /// Takes `spans` spans encoded as `fields` into the queue, if they fit the byte budget.
    pub(super) fn admit(&mut self, fields: &[u8], spans: usize) -> Admitted {
        if self.held_bytes.saturating_add(fields.len()) > self.budget {
            return match &mut self.full {
                Some(n) => {
                    *n += spans as u64;
                    Admitted::Refused { first: false }
                }
                None => {
                    self.full = Some(spans as u64);
                    Admitted::Refused { first: true }
                }
            };
        }
        self.runs.push_back((fields.to_vec(), spans));
        self.queued_spans += spans;
        self.queued_bytes += fields.len();
        self.held_bytes += fields.len();
        self.held_spans += spans;
        Admitted::Queued {
            room_again: self.room_again(),
        }
    }

    /// The queue had been full and is down to the hysteresis mark: how many spans were refused
    /// meanwhile (once; then the queue is no longer full). Checked at each push and each tick,
    /// so the line that closes a full spell is written even when no span arrives. Hysteresis:
    /// "room again" once the queue is down to half, not at every push that happens to fit
    /// (which would log twice per export answer under steady overload).
    pub(super) fn room_again(&mut self) -> Option<u64> {
        if self.full.is_some() && self.held_bytes <= self.budget / QUEUE_ROOM_AGAIN_DIVISOR {
            self.full.take()
        } else {
            None
        }
    }

    /// Spans waiting in the queue (not yet in a batch).
    pub(super) fn queued(&self) -> usize {
        self.queued_spans
    }

    /// A full batch (`max_export_batch_size` spans, or `max_export_bytes`) is waiting.
    pub(super) fn has_full_batch(&self) -> bool {
        self.queued_spans >= self.max_batch || self.queued_bytes >= self.max_batch_bytes
    }

    pub(super) fn held_spans(&self) -> usize {
        self.held_spans
    }

    pub(super) fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Pushes are being refused (until the queue is down to the hysteresis mark).
    #[cfg(test)]
    pub(super) fn is_full(&self) -> bool {
        self.full.is_some()
    }

    /// Takes a batch from the queue, whole pushes only: up to `max_export_batch_size` spans and
    /// `max_export_bytes` bytes (a first push bigger than that goes alone). `None` when the
    /// queue is empty, or holds less than a full batch and `partial` is false. The bytes stay
    /// held until the batch is released.
    pub(super) fn take(&mut self, partial: bool) -> Option<Batch> {
        if !partial && !self.has_full_batch() {
            return None;
        }
        let mut n = 0;
        let mut spans = 0;
        let mut bytes = 0;
        for (r, s) in &self.runs {
            if n > 0 && (spans + s > self.max_batch || bytes + r.len() > self.max_batch_bytes) {
                break;
            }
            n += 1;
            spans += s;
            bytes += r.len();
        }
        if n == 0 {
            return None;
        }
        let runs: Vec<(Vec<u8>, usize)> = self.runs.drain(..n).collect();
        self.queued_spans = self.queued_spans.saturating_sub(spans);
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
        Some(Batch::new(runs))
    }

    /// The next batch that failed retryably, oldest first.
    pub(super) fn pop_retry(&mut self) -> Option<Batch> {
        self.retry.pop_front()
    }

    pub(super) fn has_retry(&self) -> bool {
        !self.retry.is_empty()
    }

    /// Puts a failed batch back for a retry, ordered by when it was first sent.
    pub(super) fn push_retry(&mut self, batch: Batch) {
        let pos = self
            .retry
            .iter()
            .position(|b| b.first_sent_ns > batch.first_sent_ns)
            .unwrap_or(self.retry.len());
        self.retry.insert(pos, batch);
    }

    /// Puts the halves of a split batch first in line (they are older than any retry).
    pub(super) fn push_retry_front(&mut self, batch: Batch) {
        self.retry.push_front(batch);
    }

    /// A batch left for good (exported or dropped): its bytes and spans are no longer held.
    pub(super) fn release(&mut self, batch: &Batch) {
        self.held_bytes = self.held_bytes.saturating_sub(batch.bytes);
        self.held_spans = self.held_spans.saturating_sub(batch.spans);
    }

    /// Nothing queued or awaiting retry (in-flight batches are the exporter's).
    pub(super) fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.retry.is_empty()
    }

    /// Forgets everything held (the VM is going away); returns how many spans were held.
    pub(super) fn clear(&mut self) -> usize {
        let n = self.held_spans;
        self.runs.clear();
        self.retry.clear();
        self.queued_spans = 0;
        self.queued_bytes = 0;
        self.held_bytes = 0;
        self.held_spans = 0;
        n
    }
}
