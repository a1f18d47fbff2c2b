//! What the exporter holds: the queue of encoded span runs waiting for a batch, the batches
//! awaiting a retry, and the byte budget (`exporter.max_queue_bytes`) over everything held
//! (queued, awaiting retry, in flight). When a push does not fit, the *newest* spans (that push)
//! are refused: what is queued is older and already paid for (the OpenTelemetry SDK's
//! `BatchSpanProcessor` drops new spans when its queue is full, too).

use std::collections::VecDeque;

/// A full queue is reported as having room again once it holds at most 1/this of
/// `max_queue_bytes`.
pub const QUEUE_ROOM_AGAIN_DIVISOR: usize = 2;

/// A run of encoded spans on its way to the collector.
pub(super) struct Batch {
    /// The request body as sent (framed, encoded, compressed).
    pub(super) body: Vec<u8>,
    pub(super) spans: usize,
    /// Encoded span bytes (what the queue budget counts).
    pub(super) bytes: usize,
    /// When it was first sent; retries stop `retry.max_elapsed` after this.
    pub(super) first_sent_ns: Option<u64>,
}

/// Runs taken from the queue for one batch.
pub(super) struct Taken {
    pub(super) runs: Vec<Vec<u8>>,
    pub(super) spans: usize,
    pub(super) bytes: usize,
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
    /// Encoded span runs awaiting export, with their span counts.
    runs: VecDeque<(Vec<u8>, usize)>,
    queued_spans: usize,
    /// Batches that failed retryably, oldest first; sent before the queue.
    retry: VecDeque<Batch>,
    /// Encoded span bytes held: queued + retry + in flight.
    held_bytes: usize,
    held_spans: usize,
    /// Spans refused since the queue became full; `Some` while full.
    full: Option<u64>,
}

impl Queue {
    pub(super) fn new(max_queue_bytes: u64, max_batch: usize) -> Queue {
        Queue {
            budget: usize::try_from(max_queue_bytes).unwrap_or(usize::MAX),
            max_batch,
            runs: VecDeque::new(),
            queued_spans: 0,
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
        self.held_bytes += fields.len();
        self.held_spans += spans;
        // Hysteresis: "room again" once the queue is down to half, not at every push that
        // happens to fit (which would log twice per export answer under steady overload).
        let room_again =
            if self.full.is_some() && self.held_bytes <= self.budget / QUEUE_ROOM_AGAIN_DIVISOR {
                self.full.take()
            } else {
                None
            };
        Admitted::Queued { room_again }
    }

    /// Spans waiting in the queue (not yet in a batch).
    pub(super) fn queued(&self) -> usize {
        self.queued_spans
    }

    /// A full batch (`max_export_batch_size` spans) is waiting.
    pub(super) fn has_full_batch(&self) -> bool {
        self.queued_spans >= self.max_batch
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

    /// Takes up to `max_export_batch_size` spans from the queue, whole pushes only: their runs,
    /// span count and bytes. `None` when the queue is empty, or holds less than a full batch
    /// and `partial` is false. The bytes stay held until the batch is released.
    pub(super) fn take(&mut self, partial: bool) -> Option<Taken> {
        if !partial && !self.has_full_batch() {
            return None;
        }
        let mut n = 0;
        let mut spans = 0;
        for (_, s) in &self.runs {
            if n > 0 && spans + s > self.max_batch {
                break;
            }
            n += 1;
            spans += s;
        }
        if n == 0 {
            return None;
        }
        let runs: Vec<Vec<u8>> = self.runs.drain(..n).map(|(b, _)| b).collect();
        self.queued_spans = self.queued_spans.saturating_sub(spans);
        let bytes = runs.iter().map(Vec::len).sum();
        Some(Taken { runs, spans, bytes })
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
        self.held_bytes = 0;
        self.held_spans = 0;
        n
    }
}
