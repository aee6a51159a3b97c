//! One engine step: schedule, run the batch, sample.

use super::{Engine, Event, FinishReason, Sequence, TokenLogprobs};
use crate::error::Result;
use crate::forward::{forward, Chunk, Logits};
use crate::kv::blocks::SeqId;

/// One scheduled piece of work: `n` tokens of sequence `seq`.
struct Work {
    seq: SeqId,
    n: usize,
    decode: bool,
    logits: bool,
}

impl Work {
    /// The next prompt chunk of `seq` that fits `budget` (taken from it); logits only when
    /// the chunk ends the prompt.
    fn prefill(sid: SeqId, seq: &Sequence, budget: &mut usize) -> Self {
        let n = seq.remaining().min(*budget);
        *budget -= n;
        Work {
            seq: sid,
            n,
            decode: false,
            logits: n == seq.remaining(),
        }
    }
}

impl Engine {
    /// Schedules and runs one batched forward pass, then samples; returns the tokens computed
    /// (0 when there was nothing to do).
    pub fn step(&mut self) -> Result<usize> {
        let plan = self.schedule()?;
        if plan.is_empty() {
            return Ok(0);
        }
        let chunks: Vec<Chunk<'_>> = plan
            .iter()
            .map(|w| {
                let s = &self.seqs[&w.seq];
                Chunk {
                    tokens: &s.tokens[s.computed..s.computed + w.n],
                    start: s.computed,
                    blocks: self
                        .blocks
                        .block_table(w.seq)
                        .expect("scheduled sequences hold blocks"),
                    logits: if w.logits { Logits::Last } else { Logits::None },
                }
            })
            .collect();
        let logits = forward(&self.model, &chunks, &mut self.kv, self.cfg.act_mode);
        drop(chunks);
        let vocab = self.model.config.vocab_size;
        let mut row = 0;
        let mut computed = 0;
        for w in plan {
            computed += w.n;
            if w.decode {
                // generated tokens are counted when sampled
            } else {
                self.stats.prompt_tokens += w.n as u64;
            }
            let l = if w.logits {
                row += 1;
                Some(&logits[(row - 1) * vocab..row * vocab])
            } else {
                None
            };
            let Some(seq) = self.seqs.get_mut(&w.seq) else {
                continue;
            };
            seq.computed += w.n;
            let done = seq.computed;
            self.blocks.mark_computed(w.seq, done)?;
            if let Some(l) = l {
                self.sample(w.seq, l)?;
            }
        }
        self.stats.steps += 1;
        self.stats.peak_blocks_used = self.stats.peak_blocks_used.max(self.blocks.num_used());
        Ok(computed)
    }

    fn schedule(&mut self) -> Result<Vec<Work>> {
        let mut budget = self.cfg.max_batched_tokens;
        let mut plan = Vec::new();
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let sid = self.running[i];
            if let Some(tok) = self.seqs[&sid].pending {
                // The pending token needs a slot: preempt the newest sequences until it has one.
                let mut preempted_self = false;
                while self.blocks.blocks_needed_to_append(sid, 1) > self.blocks.num_free() {
                    let victim = *self.running.last().expect("sid is running");
                    self.preempt(victim);
                    if victim == sid {
                        preempted_self = true;
                        break;
                    }
                }
                if preempted_self {
                    break;
                }
                for (src, dst) in self.blocks.append(sid, &[tok])? {
                    self.kv.copy_block(src, dst);
                }
                let seq = self.seqs.get_mut(&sid).expect("running sequence exists");
                seq.tokens.push(tok);
                seq.pending = None;
                plan.push(Work {
                    seq: sid,
                    n: 1,
                    decode: true,
                    logits: true,
                });
                budget -= 1;
            } else {
                plan.push(Work::prefill(sid, &self.seqs[&sid], &mut budget));
            }
            i += 1;
        }
        while budget > 0 && self.running.len() < self.cfg.max_num_seqs {
            let Some(&sid) = self.waiting.front() else {
                break;
            };
            let need = self.blocks.blocks_needed(&self.seqs[&sid].tokens);
            // Keep a few blocks for the running sequences' next tokens (fewer preemptions).
            let watermark = if self.running.is_empty() {
                0
            } else {
                (self.cfg.num_blocks / 100).max(1)
            };
            if need + watermark > self.blocks.num_free() {
                break;
            }
            let cached = self.blocks.allocate(sid, &self.seqs[&sid].tokens)?;
            self.stats.cached_prompt_tokens += cached as u64;
            self.waiting.pop_front();
            self.running.push(sid);
            let seq = self.seqs.get_mut(&sid).expect("waiting sequence exists");
            seq.computed = cached;
            plan.push(Work::prefill(sid, seq, &mut budget));
        }
        self.stats.peak_running = self.stats.peak_running.max(self.running.len());
        Ok(plan)
    }

    /// Samples the next token(s) of `sid` from `logits`, forking an `n > 1` request first.
    fn sample(&mut self, sid: SeqId, logits: &[f32]) -> Result<()> {
        let mut ids = vec![sid];
        let parent = self.seqs.get_mut(&sid).expect("sampled sequence exists");
        if parent.fork_pending {
            parent.fork_pending = false;
            let template = parent.clone();
            for index in 1..template.n {
                let cid = self.new_seq_id();
                self.blocks.fork(sid, cid)?;
                let child = Sequence {
                    index,
                    sampler: template.sampler.with_stream(index as u64),
                    ..template.clone()
                };
                self.seqs.insert(cid, child);
                self.running.push(cid);
                let state = self
                    .requests
                    .get_mut(&template.request)
                    .expect("request of a live sequence");
                state.seqs.push(cid);
                state.live += 1;
                ids.push(cid);
            }
        }
        for id in ids {
            let seq = self.seqs.get_mut(&id).expect("sequence exists");
            let token = seq.sampler.sample(logits);
            let logprobs = seq
                .logprobs
                .map(|top| Box::new(TokenLogprobs::from_logits(logits, token, top)));
            seq.generated += 1;
            self.stats.generated_tokens += 1;
            let (request, index) = (seq.request, seq.index);
            let stop = seq.stop_tokens.contains(&token);
            let full = seq.generated >= seq.max_tokens
                || seq.tokens.len() + 1 >= self.model.config.max_position_embeddings;
            if !stop && !full {
                seq.pending = Some(token);
            }
            let listening = self.requests.get(&request).is_some_and(|r| {
                r.send(Event::Token {
                    index,
                    token,
                    logprobs,
                })
            });
            if !listening {
                self.abort(request);
            } else if stop {
                self.finish(id, FinishReason::Stop);
            } else if full {
                self.finish(id, FinishReason::Length);
            }
        }
        Ok(())
    }
}
