//! What a caller asks of the engine and what it hears back.

use crate::sampling::SamplingParams;

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new token of sequence `index`.
    Token {
        /// Which of the request's `n` sequences.
        index: usize,
        /// The token id.
        token: u32,
    },
    /// Sequence `index` ended.
    Finished {
        /// Which of the request's `n` sequences.
        index: usize,
        /// Why.
        reason: FinishReason,
    },
}
