//! One sequence's state inside the engine.

use super::request::{Request, RequestId};
use crate::sampling::Sampler;

/// A sequence: its tokens, how many of them have K/V in the cache, and its sampler.
#[derive(Clone, Debug)]
pub(super) struct Sequence {
    /// The request it belongs to.
    pub request: RequestId,
    /// Which of the request's `n` samples it is.
    pub index: usize,
    /// Prompt and generated tokens whose K/V is in, or will be put in, the cache.
    pub tokens: Vec<u32>,
    /// Tokens of `tokens` whose K/V is computed.
    pub computed: usize,
    /// The last sampled token, not yet in `tokens` (its K/V is computed by the next step).
    pub pending: Option<u32>,
    /// Tokens generated so far.
    pub generated: usize,
    /// Generation limit.
    pub max_tokens: usize,
    /// Stop tokens.
    pub stop_tokens: Vec<u32>,
    /// Sampler (its own stream per forked sample).
    pub sampler: Sampler,
    /// True for the first sequence of an `n > 1` request until it forks.
    pub fork_pending: bool,
    /// Samples to fork at the first sampled token.
    pub n: usize,
    /// Alternatives to report with each token's log-probability (`None`: none reported).
    pub logprobs: Option<usize>,
}

impl Sequence {
    /// The first sequence of `req`.
    pub fn new(request: RequestId, index: usize, req: &Request, sampler: Sampler) -> Self {
        Self {
            request,
            index,
            tokens: req.prompt.clone(),
            computed: 0,
            pending: None,
            generated: 0,
            max_tokens: req.max_tokens,
            stop_tokens: req.stop_tokens.clone(),
            sampler,
            fork_pending: req.n > 1,
            n: req.n,
            logprobs: req.logprobs,
        }
    }

    /// After preemption: everything, including the pending token, is recomputed.
    pub fn reset_for_recompute(&mut self) {
        if let Some(t) = self.pending.take() {
            self.tokens.push(t);
        }
        self.computed = 0;
    }

    /// Tokens still to compute before the next sample.
    pub fn remaining(&self) -> usize {
        self.tokens.len() - self.computed
    }
}
