//! Writes tiny `pack-quantized` fixtures for the compressed-tensors interop check.
//!
//! ```text
//! cargo run -p compress-format --example write_packed_fixture -- OUT_DIR
//! .venv/bin/python tests/interop/ct_decompress.py OUT_DIR
//! ```
//!
//! For every combination of bits, symmetry, strategy and scale dtype this
//! writes `OUT_DIR/<name>/` holding
//!
//! * `model.safetensors`: the packed tensors (`weight_packed`, `weight_scale`,
//!   `weight_zero_point`, `weight_shape`) of three random layers;
//! * `quantization_config.json`: [`QuantizationConfig::to_json`];
//! * `expected.safetensors`: `<prefix>.weight` (F32) = [`QuantizedLinear::dequantize`].
//!
//! Each layer is read back with [`QuantizedLinear::from_files`] as a self-check.

use compress_format::pack_quantized::round_to_dtype;
use compress_format::{
    write_model_dir_weights, write_safetensors, Dtype, ModelFiles, QuantizationConfig,
    QuantizedLinear, TensorOut, WeightQuant,
};
use std::path::Path;

/// Layers written to every fixture: (prefix, out_features, in_features); `in` is a multiple of 32.
const LAYERS: [(&str, usize, usize); 3] = [
    ("model.layers.0.self_attn.q_proj", 32, 64),
    ("model.layers.0.mlp.up_proj", 13, 96),
    ("model.layers.1.mlp.down_proj", 20, 32),
];

/// SplitMix64: a tiny deterministic generator, so fixtures are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform integer in `lo..=hi`.
    fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u64) as i32
    }

    /// Uniform float in `[0, 1)` with 24 random bits.
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A random layer for `wq` whose scales are already rounded to `dtype`.
fn random_layer(
    wq: &WeightQuant,
    out: usize,
    inn: usize,
    dtype: Dtype,
    rng: &mut Rng,
) -> QuantizedLinear {
    let (lo, hi) = (wq.qmin(), wq.qmax());
    let n: usize = wq.scale_shape(out, inn).iter().product();
    let q = (0..out * inn).map(|_| rng.int(lo, hi) as i8).collect();
    let mut scales: Vec<f32> = (0..n).map(|_| 1e-3 * (1.0 + 7.0 * rng.unit())).collect();
    round_to_dtype(&mut scales, dtype);
    let zero_points = (!wq.symmetric).then(|| (0..n).map(|_| rng.int(lo, hi) as i8).collect());
    QuantizedLinear {
        out_features: out,
        in_features: inn,
        q,
        scales,
        zero_points,
    }
}

/// Every (name, scheme, scale dtype) written.
fn combinations() -> Vec<(String, WeightQuant, Dtype)> {
    let dname = |d: Dtype| d.name().to_ascii_lowercase();
    let sname = |sym: bool| if sym { "sym" } else { "asym" };
    let mut out = Vec::new();
    for bits in [4, 8] {
        for sym in [true, false] {
            for (tag, wq) in [
                ("group16", WeightQuant::group(bits, sym, 16)),
                ("group32", WeightQuant::group(bits, sym, 32)),
                ("channel", WeightQuant::channel(bits, sym)),
            ] {
                for dtype in [Dtype::F32, Dtype::BF16] {
                    let name = format!("int{bits}_{}_{tag}_{}", sname(sym), dname(dtype));
                    out.push((name, wq, dtype));
                }
            }
        }
    }
    for (bits, sym, dtype) in [
        (4, true, Dtype::F32),
        (4, false, Dtype::F32),
        (8, false, Dtype::BF16),
    ] {
        let name = format!("int{bits}_{}_tensor_{}", sname(sym), dname(dtype));
        out.push((name, WeightQuant::tensor(bits, sym), dtype));
    }
    // Word-aligned packing of the other widths (padding bits in every word).
    for bits in [2, 3, 5, 6, 7] {
        let name = format!("int{bits}_asym_group16_f32");
        out.push((name, WeightQuant::group(bits, false, 16), Dtype::F32));
    }
    out.push((
        "int4_asym_group32_f16".into(),
        WeightQuant::group(4, false, 32),
        Dtype::F16,
    ));
    out
}

/// Writes one fixture directory and reads it back.
fn write_fixture(
    dir: &Path,
    wq: &WeightQuant,
    dtype: Dtype,
    seed: u64,
) -> compress_format::Result<()> {
    let mut rng = Rng(seed);
    let mut packed = Vec::new();
    let mut expected = Vec::new();
    let mut layers = Vec::new();
    for (prefix, out, inn) in LAYERS {
        let layer = random_layer(wq, out, inn, dtype, &mut rng);
        packed.extend(layer.to_tensors(prefix, wq, dtype)?);
        let w = layer.dequantize(wq);
        expected.push(TensorOut::from_f32(
            format!("{prefix}.weight"),
            vec![out, inn],
            &w,
            Dtype::F32,
        )?);
        layers.push((prefix, layer));
    }
    write_model_dir_weights(dir, &packed, None)?;
    write_safetensors(&dir.join("expected.safetensors"), &expected, None)?;
    let config = QuantizationConfig::new(*wq);
    let mut text = serde_json::to_string_pretty(&config.to_json()).expect("JSON value serializes");
    text.push('\n');
    compress_format::write_atomic(&dir.join("quantization_config.json"), text.as_bytes())?;

    let files = ModelFiles::open_dir(dir)?;
    for (prefix, layer) in &layers {
        let back = QuantizedLinear::from_files(&files, prefix, wq)?;
        assert_eq!(
            &back,
            layer,
            "{}: {prefix} does not read back",
            dir.display()
        );
    }
    let json: serde_json::Value = serde_json::from_str(&text).expect("just written");
    assert_eq!(QuantizationConfig::from_json(&json, dir)?, config);
    Ok(())
}

fn main() {
    let Some(out_dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: write_packed_fixture OUT_DIR");
        std::process::exit(2);
    };
    let out_dir = Path::new(&out_dir);
    let combos = combinations();
    for (i, (name, wq, dtype)) in combos.iter().enumerate() {
        let dir = out_dir.join(name);
        if let Err(e) = write_fixture(&dir, wq, *dtype, 1000 + i as u64) {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
    }
    println!(
        "wrote {} fixtures under {}",
        combos.len(),
        out_dir.display()
    );
}
