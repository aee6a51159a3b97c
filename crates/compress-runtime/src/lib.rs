//! compress-runtime: the inference runtime (mmap loader, int4/int8 kernels, paged KV cache,
//! continuous batching, OpenAI-compatible server). It depends on compress-format only, never
//! on burn. The runtime lands with its own issue; this crate holds its place in the workspace.
