//! The Llama-family model: config, layers, rotary embeddings, the decoder, and its
//! tensors by HF name (load/save live in [`hf`]).

pub mod config;
pub mod experts;
pub mod fake_quant;
pub mod hf;
pub mod layers;
pub mod llama;
pub mod names;
pub mod rope;
pub mod weights;

pub use config::LlamaConfig;
pub use hf::{load_model, open_checkpoint, save_model, Checkpoint, LoadedModel};
pub use llama::{batch_tensor, tokens_tensor, KvCache, LlamaModel, ModelOutput};
