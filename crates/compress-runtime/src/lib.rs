//! compress-runtime: the inference runtime. It reads the model dirs compress writes (and plain
//! HF f32/f16/bf16 dirs) by mmap, runs them with int4/int8/float kernels over a paged KV cache,
//! and batches requests continuously. It depends on compress-format only, never on burn.
//!
//! * [`loader`]: mmap a model dir into [`Model`] (weights used in place where possible);
//! * [`kernels`]: `x · Wᵀ` for int4/int8/float weights, f32 or 8-bit activations;
//! * [`linear`]: a linear layer (kernel weight + bias) and its product; [`moe`]: expert FFNs;
//! * [`kv`]: the paged KV cache (block manager, storage);
//! * [`forward`] and [`attention`]: one batched pass over chunks of many sequences;
//! * [`sampling`]: greedy and top-p sampling;
//! * [`engine`]: continuous batching (scheduler, preemption, streaming, abort);
//! * [`mod@bench`]: throughput, latency and KV use at several concurrencies, and read bandwidth.

pub mod attention;
pub mod bench;
pub mod config;
pub mod engine;
pub mod error;
pub mod forward;
pub mod kernels;
pub mod kv;
pub mod linear;
pub mod loader;
pub mod moe;
pub mod sampling;

pub use config::ModelConfig;
pub use engine::{Engine, EngineConfig, Event, FinishReason, Request};
pub use error::{Result, RuntimeError};
pub use loader::Model;
pub mod server;
