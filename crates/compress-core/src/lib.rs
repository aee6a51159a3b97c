//! compress-core: the burn model of the Llama family, HF checkpoint I/O, tokenizer and data,
//! the trainer, evaluation and generation, and (later) the compression stages.
//!
//! Everything here runs on a run-time chosen [`burn::tensor::Device`]: the pure-Rust flex
//! backend by default, libtorch (CPU or CUDA) with the `tch` feature. See [`device`].

pub mod data;
pub mod device;
pub mod digest;
pub mod error;
pub mod eval;
pub mod generate;
pub mod model;
pub mod outdir;
pub mod progress;
pub mod quant;
pub mod recipe;
pub mod settings;
pub mod stages;
pub mod tensor_util;
pub mod tokenizer;
pub mod train;

/// The burn version this crate is built on, for callers that need its types.
pub use burn;
pub use device::parse_device;
pub use error::{CoreError, Result};
pub use model::{KvCache, LlamaConfig, LlamaModel};
pub use progress::Progress;
