//! `compress inspect MODEL [--json]`.

use anyhow::{Context, Result};
use compress_core::model::LlamaConfig;
use compress_core::tokenizer::Tokenizer;
use compress_format::hf_config::HfConfig;
use compress_format::safetensors::ModelFiles;
use serde::Serialize;

use crate::cli::InspectArgs;

#[derive(Serialize)]
struct Report {
    path: String,
    architecture: String,
    config: LlamaConfig,
    parameters: usize,
    dtype: Option<String>,
    tensors: usize,
    shards: usize,
    weight_bytes: u64,
    tokenizer: bool,
    quantized: bool,
}

pub fn run(a: InspectArgs) -> Result<()> {
    let cfg_path = a.model.join("config.json");
    let hf = HfConfig::from_file(&cfg_path)?;
    let files = ModelFiles::open_dir(&a.model)?;
    // The tensors must agree with config.json (names, shapes, vocabulary): a config the weights
    // contradict is an error naming the tensor, not a report of numbers nobody can load.
    compress_core::model::open_checkpoint(&a.model)
        .and_then(|ck| ck.check_shapes())
        .with_context(|| {
            format!(
                "{}: config.json and the weights disagree",
                a.model.display()
            )
        })?;
    let cfg = LlamaConfig::from_hf(&hf);
    let weight_bytes = compress_core::model::hf::weight_bytes(&a.model)?;
    let report = Report {
        path: a.model.display().to_string(),
        architecture: format!("{:?}", hf.architecture),
        parameters: cfg.num_parameters(),
        dtype: files.dtype().map(|d| format!("{d:?}")),
        tensors: files.names().len(),
        shards: files.num_shards(),
        weight_bytes,
        // Readable, not merely present.
        tokenizer: matches!(Tokenizer::from_model_dir(&a.model), Ok(Some(_))),
        quantized: hf.raw.contains_key("quantization_config"),
        config: cfg,
    };
    if a.json {
        return super::print_json(&report);
    }
    print_text(&report, &hf);
    Ok(())
}

/// The report as text, one property per line.
fn print_text(report: &Report, hf: &HfConfig) {
    let c = &report.config;
    println!("{}", report.path);
    println!("  architecture   {}", report.architecture);
    println!(
        "  parameters     {} ({:.2} M)",
        report.parameters,
        report.parameters as f64 / 1e6
    );
    println!(
        "  layers         {} × (hidden {}, ffn {}, heads {} / kv {} × {})",
        c.num_layers, c.hidden_size, c.intermediate_size, c.num_heads, c.num_kv_heads, c.head_dim
    );
    if !hf.layer_shapes.is_empty() {
        let list = |f: fn(&compress_format::hf_config::LayerShape) -> usize| {
            hf.layer_shapes.iter().map(f).collect::<Vec<_>>()
        };
        println!(
            "  per layer      heads {:?}, kv {:?}, ffn {:?} (compress_layer_shapes: largest above)",
            list(|x| x.num_attention_heads),
            list(|x| x.num_key_value_heads),
            list(|x| x.intermediate_size)
        );
    }
    if c.shared_layers > 0 {
        println!(
            "  shared blocks  {} distinct, layer l runs block l mod {} (compress_shared_layers)",
            c.shared_layers, c.shared_layers
        );
    }
    if let Some(m) = &c.moe {
        println!(
            "  experts        {} per layer, top-{} ({}; num_experts)",
            m.num_experts,
            m.top_k,
            m.routing.name()
        );
    }
    println!("  vocab          {}", c.vocab_size);
    println!(
        "  rope           theta {}{}",
        c.rope_theta,
        c.rope_scaling
            .as_ref()
            .map(|s| format!(", scaling {} ×{}", s.rope_type, s.factor))
            .unwrap_or_default()
    );
    println!(
        "  embeddings     {}",
        if c.tie_word_embeddings {
            "tied"
        } else {
            "untied"
        }
    );
    println!(
        "  weights        {} tensors, {}, {} shard(s), {:.2} MB",
        report.tensors,
        report.dtype.as_deref().unwrap_or("?"),
        report.shards,
        report.weight_bytes as f64 / 1e6
    );
    println!(
        "  tokenizer      {}",
        if report.tokenizer { "yes" } else { "no" }
    );
    print_compression(hf);
}

/// The quantization and sparsity lines of `config.json`'s `quantization_config`.
fn print_compression(hf: &HfConfig) {
    let Some(q) = hf.raw.get("quantization_config") else {
        return;
    };
    let w = &q["config_groups"]["group_0"]["weights"];
    if w.is_object() {
        let sym = w["symmetric"].as_bool() == Some(true);
        println!(
            "  quantized      {} int{} {} {}{}",
            q["format"].as_str().unwrap_or("?"),
            w["num_bits"],
            if sym { "symmetric" } else { "asymmetric" },
            w["strategy"].as_str().unwrap_or("?"),
            w["group_size"]
                .as_u64()
                .map(|g| format!(" {g}"))
                .unwrap_or_default()
        );
    }
    let sp = &q["sparsity_config"];
    if let Some(structure) = sp["sparsity_structure"].as_str() {
        println!(
            "  sparsity       {} {:.4} (zeros stored in place)",
            structure,
            sp["global_sparsity"].as_f64().unwrap_or(0.0)
        );
    }
}
