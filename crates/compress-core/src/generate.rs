//! Autoregressive generation with the KV cache: greedy at temperature 0, otherwise
//! temperature + nucleus (top-p) sampling from a seeded RNG; stops at an EOS token.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{CoreError, Result};
use crate::model::{tokens_tensor, KvCache, LlamaModel};
use crate::tensor_util::to_vec_f32;

/// Sampling settings.
#[derive(Clone, Debug)]
pub struct SamplingConfig {
    /// Maximum number of new tokens.
    pub max_tokens: usize,
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f32,
    /// Nucleus sampling mass in (0, 1].
    pub top_p: f32,
    /// RNG seed for sampling.
    pub seed: u64,
    /// Tokens that end generation (included in the output when produced).
    pub stop_tokens: Vec<u32>,
}

impl SamplingConfig {
    /// Greedy decoding of `max_tokens` tokens that never stops early.
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_tokens: Vec::new(),
        }
    }

    /// Checks the values are usable.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(CoreError::setting(
                "temperature",
                self.temperature,
                "must be >= 0",
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(CoreError::setting("top_p", self.top_p, "must be in (0, 1]"));
        }
        Ok(())
    }
}

/// Index of the largest value (the first one on ties, as torch.argmax).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Draws a token from `logits` with temperature and top-p.
pub fn sample(logits: &[f32], temperature: f32, top_p: f32, rng: &mut StdRng) -> usize {
    if temperature == 0.0 {
        return argmax(logits);
    }
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i, (((l - max) / temperature) as f64).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    probs.iter_mut().for_each(|p| p.1 /= total);
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = 0;
    let mut mass = 0.0;
    for p in &probs {
        kept += 1;
        mass += p.1;
        if mass >= top_p as f64 {
            break;
        }
    }
    let probs = &probs[..kept];
    let mut r = rng.random::<f64>() * mass;
    for p in probs {
        r -= p.1;
        if r <= 0.0 {
            return p.0;
        }
    }
    probs[kept - 1].0
}

/// Generates up to `cfg.max_tokens` tokens after `prompt`, calling `on_token` for each.
/// Returns the generated ids (without the prompt).
pub fn generate(
    model: &LlamaModel,
    prompt: &[u32],
    cfg: &SamplingConfig,
    mut on_token: impl FnMut(u32),
) -> Result<Vec<u32>> {
    cfg.validate()?;
    if prompt.is_empty() {
        return Err(CoreError::Invalid("the prompt is empty".into()));
    }
    let vocab = model.config.vocab_size;
    if let Some(bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
        return Err(CoreError::Invalid(format!(
            "prompt token id {bad} is outside the vocabulary (size {vocab})"
        )));
    }
    let device = model.embed_tokens.weight.val().device();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut cache = KvCache::new(model.num_layers());
    let mut input = prompt.to_vec();
    let mut out = Vec::with_capacity(cfg.max_tokens);
    for _ in 0..cfg.max_tokens {
        let logits = model.forward_cached(tokens_tensor(&input, &device), &mut cache);
        let [_, seq, v] = logits.dims();
        let last = to_vec_f32(logits.narrow(1, seq - 1, 1).reshape([v]));
        let next = sample(&last, cfg.temperature, cfg.top_p, &mut rng) as u32;
        out.push(next);
        on_token(next);
        if cfg.stop_tokens.contains(&next) {
            break;
        }
        input = vec![next];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    }

    #[test]
    fn top_p_restricts_to_the_nucleus() {
        let mut rng = StdRng::seed_from_u64(7);
        let logits = [10.0, 9.0, -10.0, -10.0];
        for _ in 0..200 {
            let t = sample(&logits, 1.0, 0.5, &mut rng);
            assert_eq!(t, 0, "top-p 0.5 keeps only the most likely token");
        }
        let mut seen = [0usize; 4];
        for _ in 0..500 {
            seen[sample(&logits, 1.0, 1.0, &mut rng)] += 1;
        }
        assert!(seen[1] > 50 && seen[0] > seen[1], "{seen:?}");
    }

    #[test]
    fn bad_settings_are_rejected() {
        let mut cfg = SamplingConfig::greedy(3);
        cfg.top_p = 0.0;
        assert!(cfg.validate().unwrap_err().to_string().contains("top_p"));
        cfg.top_p = 1.0;
        cfg.temperature = -1.0;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("temperature"));
    }
}
