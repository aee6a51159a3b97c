//! What a caller asks of the engine and what it hears back.

use crate::sampling::{SamplingParams, TokenLogprobs};

/// Identifies a request inside one engine.
pub type RequestId = u64;

/// A generation request.
#[derive(Clone, Debug)]
pub struct Request {
    /// Prompt token ids (non-empty).
    pub prompt: Vec<u32>,
    /// Most tokens to generate per sequence (≥ 1).
    pub max_tokens: usize,
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// Tokens that end a sequence (emitted, then the sequence stops).
    pub stop_tokens: Vec<u32>,
    /// Independent samples for the prompt (`n > 1` forks the prompt's KV copy-on-write).
    pub n: usize,
    /// Report each sampled token's log-probability and this many most likely alternatives
    /// (`None`: no log-probabilities).
    pub logprobs: Option<usize>,
}

impl Request {
    /// A greedy request for `max_tokens` tokens, stopping at `stop_tokens`.
    pub fn greedy(prompt: Vec<u32>, max_tokens: usize, stop_tokens: Vec<u32>) -> Self {
        Self {
            prompt,
            max_tokens,
            sampling: SamplingParams::default(),
            stop_tokens,
            n: 1,
            logprobs: None,
        }
    }
}

/// Why a sequence ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// It produced `max_tokens` tokens or reached the model's context length.
    Length,
    /// It produced a stop token.
    Stop,
    /// The caller aborted it (or dropped its receiver).
    Aborted,
}

/// A streamed event of one request; `index` tells its sequences apart when `n > 1`.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A new token of sequence `index`.
    Token {
        /// Which of the request's `n` sequences.
        index: usize,
        /// The token id.
        token: u32,
        /// Its log-probabilities, when the request asked for them.
        logprobs: Option<Box<TokenLogprobs>>,
    },
    /// Sequence `index` ended.
    Finished {
        /// Which of the request's `n` sequences.
        index: usize,
        /// Why.
        reason: FinishReason,
    },
}

/// Where a request's events go. `send` returns false once nobody listens any more; the
/// engine then aborts the request and frees its blocks.
pub trait EventSink: Send {
    /// Delivers `ev`; false when the listener is gone.
    fn send(&self, ev: Event) -> bool;
}

impl EventSink for std::sync::mpsc::Sender<Event> {
    fn send(&self, ev: Event) -> bool {
        std::sync::mpsc::Sender::send(self, ev).is_ok()
    }
}

impl EventSink for tokio::sync::mpsc::UnboundedSender<Event> {
    fn send(&self, ev: Event) -> bool {
        tokio::sync::mpsc::UnboundedSender::send(self, ev).is_ok()
    }
}
