//! `compress quantize` on a random-weight model of TinyLlama-1.1B's shapes (22 layers, hidden
//! 2048, intermediate 5632, 32 heads / 4 KV heads, vocab 32000, bf16): wall time and the
//! child's peak resident memory (wait4 ru_maxrss) for RTN int4 g128 and GPTQ int4 g128, and
//! GPTQ's seconds per decoder layer. The goal is GPTQ peak RSS < 6 GB; the anchor for RTN is
//! llama-quantize F16 → Q4_0 of the same shapes, 5.3 s on 2 cores (~200 M parameters/s).
//!
//! `cargo bench -p compress-cli --bench quantize_1b` (the model, ~2.2 GB, is made once under
//! target/bench-models). `COMPRESS_BENCH_CALIB=N` sets the calibration sequences (default 16
//! × 512 tokens); `COMPRESS_BENCH_DEVICE` passes `--device`. `-- --model-only` only writes the
//! model (bench/vs_llama_cpp.sh runs the runtime on it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use compress_core::model::weights::{tensor_specs, TensorKind};
use compress_core::model::LlamaConfig;
use compress_format::hf_config::HfConfig;
use compress_format::safetensors::{write_model_dir_weights, Dtype, TensorOut};

const CONFIG: &str = r#"{
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
  "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
  "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000,
  "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2
}"#;

struct Rng(u64);

impl Rng {
    /// Roughly normal(0, 0.02): a sum of uniforms.
    fn weight(&mut self) -> f32 {
        let mut s = 0.0;
        for _ in 0..4 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            s += (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        }
        s * 0.035
    }
}

fn make_model(dir: &Path) {
    if dir.join("model.safetensors").exists() {
        return;
    }
    eprintln!("writing a random 1.1B-shape model to {}", dir.display());
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), CONFIG).unwrap();
    let cfg = LlamaConfig::from_hf(&HfConfig::from_file(&dir.join("config.json")).unwrap());
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let tensors: Vec<TensorOut> = tensor_specs(&cfg)
        .into_iter()
        .map(|s| {
            let n: usize = s.shape.iter().product();
            let v: Vec<f32> = match s.kind {
                TensorKind::Norm => vec![1.0; n],
                TensorKind::Bias => vec![0.0; n],
                _ => (0..n).map(|_| rng.weight()).collect(),
            };
            TensorOut::from_f32(s.name, s.shape, &v, Dtype::BF16).unwrap()
        })
        .collect();
    write_model_dir_weights(dir, &tensors, None).unwrap();
}

fn make_calib(path: &Path, n: usize) {
    let mut rng = Rng(7);
    let rows: Vec<Vec<u32>> = (0..n)
        .map(|_| {
            (0..512)
                .map(|_| ((rng.weight().abs() * 1e6) as u32) % 32000)
                .collect()
        })
        .collect();
    std::fs::write(path, serde_json::to_string(&rows).unwrap()).unwrap();
}

/// Runs `compress` and returns (seconds, peak RSS bytes, stdout).
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives its rusage
fn run(args: &[&str]) -> (f64, u64, String) {
    let t0 = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_compress"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        use std::io::Read;
        child.stdout.unwrap().read_to_string(&mut s).unwrap();
        s
    });
    let mut status = 0;
    // SAFETY: `rusage` is plain old data that wait4 fills in for our own child `pid`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4");
    let stdout = out.join().unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "compress {args:?} failed"
    );
    (
        t0.elapsed().as_secs_f64(),
        usage.ru_maxrss as u64 * 1024,
        stdout,
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-models");
    let model = root.join("llama-1.1b-random");
    make_model(&model);
    if std::env::args().any(|a| a == "--model-only") {
        println!("{}", model.display());
        return;
    }
    let n_calib: usize = std::env::var("COMPRESS_BENCH_CALIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let calib = root.join(format!("calib-{n_calib}x512.json"));
    make_calib(&calib, n_calib);
    let device = std::env::var("COMPRESS_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let params = 22.0 * (2.0 * 2048.0 * 2048.0 + 2.0 * 2048.0 * 256.0 + 3.0 * 2048.0 * 5632.0);
    let (m, n_str) = (model.to_str().unwrap(), n_calib.to_string());
    for method in ["rtn", "gptq"] {
        let out = root.join(format!("out-{method}"));
        let mut args = vec![
            "--device",
            &device,
            "quantize",
            "--model",
            m,
            "--out",
            out.to_str().unwrap(),
            "--bits",
            "4",
            "--group-size",
            "128",
            "--method",
            method,
            "--overwrite",
            "--json",
        ];
        if method == "gptq" {
            args.extend([
                "--calib",
                calib.to_str().unwrap(),
                "--calib-samples",
                &n_str,
            ]);
            args.extend(["--seq-len", "512"]);
        }
        let (secs, rss, stdout) = run(&args);
        let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let layer_secs: Vec<f64> = summary["layer_seconds"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default();
        let per_layer = layer_secs.iter().sum::<f64>() / layer_secs.len().max(1) as f64;
        println!(
            "{method:>5} int4 g128: {secs:7.1} s wall ({:.0} M linear params/s, {:.2}x llama-quantize's 5.3 s), \
             peak RSS {:.2} GB, {per_layer:.2} s per decoder layer",
            params / secs / 1e6,
            5.3 / secs,
            rss as f64 / 1e9
        );
        std::fs::remove_dir_all(&out).ok();
    }
}
