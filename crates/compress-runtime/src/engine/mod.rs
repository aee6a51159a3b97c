//! The continuous-batching engine: requests join and leave between steps; every step runs
//! all scheduled sequences (decode tokens and chunks of prompts) through one batched forward
//! pass, so each weight is read once per step whatever the number of sequences.
//!
//! Scheduling (per step, a budget of `max_batched_tokens` tokens):
//! 1. running sequences, oldest first: a decoding one takes 1 token, a prefilling one the
//!    next chunk of its prompt that fits the budget; when the KV cache has no block for a
//!    sequence's next token, the newest running sequence is preempted (its blocks freed; it
//!    is recomputed later from its tokens, mostly from the prefix cache), never an error;
//! 2. waiting sequences, first come first served, while there are blocks (beyond a small
//!    watermark), budget and room under `max_num_seqs`.
//!
//! Requests are checked when added: a prompt plus `max_tokens` that could never fit the
//! cache or the model's context is refused then, so the scheduler always makes progress.

mod generate;
mod request;
mod sequence;

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;

/// Log-probabilities of a sampled token, re-exported from their home [`crate::sampling`].
pub use crate::sampling::TokenLogprobs;
pub use request::{Event, EventSink, FinishReason, Request, RequestId};
use sequence::Sequence;

use crate::config::ModelConfig;
use crate::error::{Result, RuntimeError};
use crate::kernels::ActMode;
use crate::kv::blocks::{BlockManager, SeqId};
use crate::kv::cache::KvCache;
use crate::kv::BLOCK_SIZE;
use crate::loader::Model;
use crate::sampling::Sampler;

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// KV cache blocks of [`BLOCK_SIZE`] tokens.
    pub num_blocks: usize,
    /// Most sequences running at once.
    pub max_num_seqs: usize,
    /// Most tokens per step (decode tokens plus prompt chunks).
    pub max_batched_tokens: usize,
    /// Reuse the KV of identical prompt prefixes.
    pub prefix_caching: bool,
    /// Activation mode of the quantized kernels.
    pub act_mode: ActMode,
}

impl EngineConfig {
    /// Defaults with `num_blocks` blocks: 64 sequences, 512 tokens per step, prefix caching on,
    /// 8-bit activations.
    pub fn with_blocks(num_blocks: usize) -> Self {
        Self {
            num_blocks,
            max_num_seqs: 64,
            max_batched_tokens: 512,
            prefix_caching: true,
            act_mode: ActMode::Q8,
        }
    }

    /// Blocks that fit in `bytes` of KV memory for `model`.
    pub fn blocks_for_bytes(model: &Model, bytes: usize) -> usize {
        bytes / KvCache::bytes_per_block(model).max(1)
    }
}

/// Counters since the engine started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineStats {
    /// Forward steps run.
    pub steps: u64,
    /// Prompt tokens computed (prefix-cache hits excluded; recomputation included).
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Sequences preempted for lack of KV blocks.
    pub preemptions: u64,
    /// Prompt tokens served from the prefix cache.
    pub cached_prompt_tokens: u64,
    /// Most KV blocks in use at once.
    pub peak_blocks_used: usize,
    /// Most sequences running at once.
    pub peak_running: usize,
}

struct RequestState {
    tx: Box<dyn EventSink>,
    seqs: Vec<SeqId>,
    live: usize,
    n: usize,
}

impl RequestState {
    /// Sends `ev`; false when the receiver is gone (the caller stopped listening).
    fn send(&self, ev: Event) -> bool {
        self.tx.send(ev)
    }
}

/// The engine: a model, its paged KV cache and the scheduler state.
pub struct Engine {
    model: Arc<Model>,
    cfg: EngineConfig,
    kv: KvCache,
    blocks: BlockManager,
    seqs: HashMap<SeqId, Sequence>,
    waiting: VecDeque<SeqId>,
    running: Vec<SeqId>,
    requests: HashMap<RequestId, RequestState>,
    next_seq: SeqId,
    next_request: RequestId,
    stats: EngineStats,
}

impl Engine {
    /// An engine for `model` with settings `cfg`.
    pub fn new(model: Arc<Model>, cfg: EngineConfig) -> Result<Self> {
        if cfg.num_blocks == 0 || cfg.max_num_seqs == 0 || cfg.max_batched_tokens == 0 {
            return Err(RuntimeError::Invalid(format!(
                "engine: num_blocks ({}), max_num_seqs ({}) and max_batched_tokens ({}) must be positive",
                cfg.num_blocks, cfg.max_num_seqs, cfg.max_batched_tokens
            )));
        }
        Ok(Self {
            kv: KvCache::new(model.as_ref(), cfg.num_blocks),
            blocks: BlockManager::new(cfg.num_blocks, cfg.prefix_caching),
            model,
            cfg,
            seqs: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            requests: HashMap::new(),
            next_seq: 0,
            next_request: 0,
            stats: EngineStats::default(),
        })
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The KV block manager (blocks used/free/cached, waste).
    pub fn blocks(&self) -> &BlockManager {
        &self.blocks
    }

    /// Sequences waiting and running.
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Sequences running.
    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    /// Whether any request is unfinished.
    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    /// Queues `req`; its tokens arrive on the returned receiver as the engine steps.
    pub fn add_request(&mut self, req: Request) -> Result<(RequestId, Receiver<Event>)> {
        let (tx, rx) = channel();
        let id = self.add_request_with(req, tx)?;
        Ok((id, rx))
    }

    /// Queues `req`, sending its events to `tx`.
    pub fn add_request_with(
        &mut self,
        req: Request,
        tx: impl EventSink + 'static,
    ) -> Result<RequestId> {
        self.validate(&req)?;
        let id = self.next_request;
        self.next_request += 1;
        let seq_id = self.new_seq_id();
        let sampler = Sampler::new(req.sampling.clone(), 0);
        self.seqs
            .insert(seq_id, Sequence::new(id, 0, &req, sampler));
        self.waiting.push_back(seq_id);
        self.requests.insert(
            id,
            RequestState {
                tx: Box::new(tx),
                seqs: vec![seq_id],
                live: 1,
                n: req.n,
            },
        );
        Ok(id)
    }

    fn validate(&self, req: &Request) -> Result<()> {
        check_request(&self.model.config, self.cfg.num_blocks, req)
    }

    fn new_seq_id(&mut self) -> SeqId {
        self.next_seq += 1;
        self.next_seq
    }

    /// Aborts request `id`: its sequences stop at once and their blocks are freed.
    pub fn abort(&mut self, id: RequestId) {
        let Some(state) = self.requests.get(&id) else {
            return;
        };
        for sid in state.seqs.clone() {
            self.finish(sid, FinishReason::Aborted);
        }
    }

    /// Stops sample `index` of request `id` as if it had produced a stop token (a stop string
    /// matched by the caller); the request's other samples go on.
    pub fn stop_sample(&mut self, id: RequestId, index: usize) {
        let Some(state) = self.requests.get(&id) else {
            return;
        };
        // Samples fork at the first sampled token, before any text can match a stop string.
        let sid = state
            .seqs
            .iter()
            .copied()
            .find(|s| self.seqs.get(s).is_some_and(|q| q.index == index));
        if let Some(sid) = sid {
            self.finish(sid, FinishReason::Stop);
        }
    }

    /// Runs steps until every request has finished.
    pub fn run_to_completion(&mut self) -> Result<()> {
        while self.has_work() {
            self.step()?;
        }
        Ok(())
    }

    /// Ends sequence `sid` (if still live): frees its blocks and tells the caller.
    fn finish(&mut self, sid: SeqId, reason: FinishReason) {
        let Some(seq) = self.seqs.remove(&sid) else {
            return;
        };
        self.running.retain(|&s| s != sid);
        self.waiting.retain(|&s| s != sid);
        if self.blocks.num_tokens(sid).is_ok() {
            self.blocks
                .free(sid)
                .expect("a live sequence is known to the block manager");
        }
        if let Some(state) = self.requests.get_mut(&seq.request) {
            state.send(Event::Finished {
                index: seq.index,
                reason: reason.clone(),
            });
            if seq.fork_pending {
                // The request's other samples were never forked off: they end with it.
                for index in 1..state.n {
                    state.send(Event::Finished {
                        index,
                        reason: reason.clone(),
                    });
                }
            }
            state.live -= 1;
            if state.live == 0 {
                self.requests.remove(&seq.request);
            }
        }
    }

    /// Frees a running sequence's blocks and queues it (first) for recomputation.
    fn preempt(&mut self, sid: SeqId) {
        self.running.retain(|&s| s != sid);
        self.blocks
            .free(sid)
            .expect("a running sequence holds blocks");
        let seq = self.seqs.get_mut(&sid).expect("running sequence exists");
        seq.reset_for_recompute();
        self.waiting.push_front(sid);
        self.stats.preemptions += 1;
    }
}

mod step;

/// Checks `req` against a model of `config` and a cache of `num_blocks` blocks: a non-empty
/// prompt inside the vocabulary and shorter than the context, `max_tokens` and `n` ≥ 1, sane
/// sampling settings, and a longest sequence the cache can ever hold (so the scheduler always
/// makes progress). The engine checks every request it is given; callers can check first.
pub fn check_request(config: &ModelConfig, num_blocks: usize, req: &Request) -> Result<()> {
    let vocab = config.vocab_size;
    let bad = |m: String| Err(RuntimeError::Invalid(m));
    if req.prompt.is_empty() {
        return bad("the prompt is empty".into());
    }
    if let Some(t) = req.prompt.iter().find(|&&t| t as usize >= vocab) {
        return bad(format!(
            "prompt token id {t} is outside the vocabulary (size {vocab})"
        ));
    }
    if req.max_tokens == 0 || req.n == 0 {
        return bad(format!(
            "max_tokens ({}) and n ({}) must be at least 1",
            req.max_tokens, req.n
        ));
    }
    if !(req.sampling.temperature >= 0.0 && req.sampling.top_p > 0.0 && req.sampling.top_p <= 1.0) {
        return bad(format!(
            "temperature must be ≥ 0 and top_p in (0, 1] (got {} and {})",
            req.sampling.temperature, req.sampling.top_p
        ));
    }
    let ctx = config.max_position_embeddings;
    if req.prompt.len() >= ctx {
        return bad(format!(
            "the prompt has {} tokens; the model's context is {ctx}",
            req.prompt.len()
        ));
    }
    let longest = (req.prompt.len() + req.max_tokens).min(ctx);
    let need = longest.div_ceil(BLOCK_SIZE);
    if need > num_blocks {
        return bad(format!(
            "prompt ({}) + max_tokens ({}) needs {need} KV blocks of {BLOCK_SIZE} tokens; the cache has {}",
            req.prompt.len(),
            req.max_tokens,
            num_blocks
        ));
    }
    Ok(())
}
