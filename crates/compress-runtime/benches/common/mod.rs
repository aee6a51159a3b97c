//! Shared by the kernel benches: random int4 weights spanning more than the caches.

use std::any::Any;
use std::sync::Arc;

use compress_runtime::kernels::{Bytes, Int4Weight, Scales, Weight};
use half::f16;

/// Bytes of weight copies to rotate through by default (beyond the caches).
pub const SPAN: usize = 256 << 20;

/// The xorshift64 step.
pub fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Copies of an int4 `[rows, cols]` weight (group `gs`, f16 scales) filling `buf`, borrowing it.
pub fn weights(buf: &Arc<Vec<u8>>, rows: usize, cols: usize, gs: usize, asym: bool) -> Vec<Weight> {
    let (size, ng) = (rows * cols / 2, rows * cols / gs);
    let mut s = 1u64;
    (0..buf.len() / size)
        .map(|i| {
            let owner: Arc<dyn Any + Send + Sync> = buf.clone();
            // SAFETY: the slice lies inside `buf`, which `owner` keeps alive and never changes.
            let data = unsafe { Bytes::borrowed(owner, &buf[i * size..(i + 1) * size]) };
            let scales: Vec<f16> = (0..ng)
                .map(|_| f16::from_f32(0.001 + (xorshift(&mut s) % 100) as f32 * 1e-4))
                .collect();
            let offsets = asym.then(|| (0..ng).map(|_| (xorshift(&mut s) % 16) as u8).collect());
            Weight::Int4(Int4Weight::new(
                rows,
                cols,
                gs,
                data,
                Scales::F16(scales),
                offsets,
            ))
        })
        .collect()
}
