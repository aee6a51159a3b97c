//! compress-runtime: the inference runtime. It reads the model dirs compress writes (and plain
//! HF f32/f16/bf16 dirs) by mmap, runs them with int4/int8/float kernels over a paged KV cache,
//! and batches requests continuously. It depends on compress-format only, never on burn.

pub mod kernels;
pub mod kv;
