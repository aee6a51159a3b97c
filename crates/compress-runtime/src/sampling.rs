//! Next-token choice: greedy (temperature 0) or temperature + nucleus (top-p) sampling from a
//! seeded generator, so a request with a seed is reproducible; and the log-probabilities of a
//! sampled token ([`TokenLogprobs`]).

/// How to pick tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy; otherwise logits are divided by it before the softmax.
    pub temperature: f32,
    /// Keep the smallest set of tokens whose probability mass reaches `top_p` (1 = all).
    pub top_p: f32,
    /// Seed of the request's generator.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// A seeded sampler (SplitMix64 generator).
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    state: u64,
}

impl Sampler {
    /// A sampler for `params`; `stream` separates the generators of forked sequences.
    pub fn new(params: SamplingParams, stream: u64) -> Self {
        let state = params.seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        Self { params, state }
    }

    /// A sampler with the same settings on another stream (a forked sample's own generator).
    pub fn with_stream(&self, stream: u64) -> Self {
        Self::new(self.params.clone(), stream)
    }

    fn next_f32(&mut self) -> f32 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Picks the next token from `logits`.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.params.temperature <= 0.0 {
            return argmax(logits);
        }
        let t = self.params.temperature;
        let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut probs: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, ((l - max) / t).exp()))
            .collect();
        let total: f32 = probs.iter().map(|p| p.1).sum();
        probs.iter_mut().for_each(|p| p.1 /= total);
        if self.params.top_p < 1.0 {
            probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut mass = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    mass += p.1;
                    mass >= self.params.top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
        }
        let mass: f32 = probs.iter().map(|p| p.1).sum();
        let mut r = self.next_f32() * mass;
        for &(id, p) in &probs {
            if r < p {
                return id;
            }
            r -= p;
        }
        probs.last().map_or(0, |p| p.0)
    }
}

/// Log-probabilities of a sampled token under the model (raw logits, before temperature and
/// top-p), with the most likely alternatives, most likely first.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    /// log p(sampled token).
    pub logprob: f32,
    /// `(token, log p)` of the most likely tokens (ties: lower id first).
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprobs {
    /// The log-softmax of `logits` at `token`, and the `top` most likely tokens with theirs
    /// (ties: lower id first).
    pub fn from_logits(logits: &[f32], token: u32, top: usize) -> Self {
        let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let lse = max + logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln();
        let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
        let top = top.min(ids.len());
        let order = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        if top > 0 && top < ids.len() {
            ids.select_nth_unstable_by(top - 1, order);
        }
        ids.truncate(top);
        ids.sort_by(order);
        Self {
            logprob: logits[token as usize] - lse,
            top: ids
                .into_iter()
                .map(|i| (i, logits[i as usize] - lse))
                .collect(),
        }
    }
}

/// Index of the largest logit (the first on ties, as torch.argmax).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_a_log_softmax_with_the_top_tokens_first() {
        let logits = [1.0f32, 3.0, -2.0, 3.0, 0.5];
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        let lp = TokenLogprobs::from_logits(&logits, 4, 3);
        assert!((lp.logprob - (0.5f32.exp() / z).ln()).abs() < 1e-6);
        let ids: Vec<u32> = lp.top.iter().map(|t| t.0).collect();
        assert_eq!(ids, [1, 3, 0]);
        assert!((lp.top[2].1 - (1.0f32.exp() / z).ln()).abs() < 1e-6);
        assert!(TokenLogprobs::from_logits(&logits, 0, 0).top.is_empty());
        assert_eq!(TokenLogprobs::from_logits(&logits, 0, 99).top.len(), 5);
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplingParams::default(), 0);
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0]), 1);
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_follows_top_p() {
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            seed: 7,
        };
        let logits = [0.0, 5.0, 0.0, 4.9];
        let a: Vec<u32> = (0..50)
            .scan(Sampler::new(params.clone(), 0), |s, _| {
                Some(s.sample(&logits))
            })
            .collect();
        let b: Vec<u32> = (0..50)
            .scan(Sampler::new(params.clone(), 0), |s, _| {
                Some(s.sample(&logits))
            })
            .collect();
        assert_eq!(a, b);
        // top_p 0.5 keeps only token 1 (p ≈ 0.51).
        assert!(a.iter().all(|&t| t == 1), "{a:?}");
        let wide = SamplingParams {
            top_p: 1.0,
            ..params
        };
        let c: Vec<u32> = (0..200)
            .scan(Sampler::new(wide, 0), |s, _| Some(s.sample(&logits)))
            .collect();
        assert!(
            c.contains(&1) && c.contains(&3),
            "temperature 1 should pick both large logits"
        );
    }
}
