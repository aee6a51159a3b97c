//! The integer quantization arithmetic every quantizer shares, on plain f32 slices (no burn):
//! code ranges and scale/zero rules ([`math`]) and round-to-nearest of a weight matrix
//! ([`rtn`]). The quantize stage's methods build on it, and the model's fake quantization
//! (QAT) calls [`rtn`] itself, so what QAT trains against is what the export writes.

pub mod math;
pub mod rtn;
