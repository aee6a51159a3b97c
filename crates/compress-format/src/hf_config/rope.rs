//! Rotary inverse frequencies from the config's RoPE settings, computed exactly as
//! transformers does (float32 throughout), shared by the burn model and the runtime.

use super::RopeScaling;

/// Inverse frequencies of one head, `head_dim / 2` of them, after `linear` or `llama3`
/// scaling (other scaling types are rejected when the model is loaded).
pub fn rope_inv_freq(head_dim: usize, theta: f64, scaling: Option<&RopeScaling>) -> Vec<f32> {
    let base = theta as f32;
    let mut inv_freq: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / head_dim as f32))
        .collect();
    if let Some(s) = scaling {
        match s.rope_type.as_str() {
            "llama3" => llama3_scale(&mut inv_freq, s),
            "linear" => inv_freq.iter_mut().for_each(|f| *f /= s.factor as f32),
            _ => {}
        }
    }
    inv_freq
}

/// transformers' `_compute_llama3_parameters`: low frequencies divided by `factor`, high ones
/// kept, and the band between smoothly interpolated.
fn llama3_scale(inv_freq: &mut [f32], s: &RopeScaling) {
    let factor = s.factor as f32;
    let low = s.low_freq_factor.unwrap_or(1.0) as f32;
    let high = s.high_freq_factor.unwrap_or(4.0) as f32;
    let old_ctx = s.original_max_position_embeddings.unwrap_or(8192) as f32;
    let low_freq_wavelen = old_ctx / low;
    let high_freq_wavelen = old_ctx / high;
    for f in inv_freq.iter_mut() {
        let wavelen = 2.0 * std::f32::consts::PI / *f;
        let mut scaled = if wavelen > low_freq_wavelen {
            *f / factor
        } else {
            *f
        };
        // Frequencies are finite, so this is transformers' `~(w < high) & ~(w > low)`.
        let is_medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
        if is_medium {
            let smooth = (old_ctx / wavelen - low) / (high - low);
            scaled = (1.0 - smooth) * scaled / factor + smooth * scaled;
        }
        *f = scaled;
    }
}
