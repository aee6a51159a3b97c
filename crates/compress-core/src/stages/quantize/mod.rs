//! Weight quantization (issue in progress): the scale/zero-point math lives in [`math`]; the
//! methods (RTN, MSE clipping, GPTQ, AWQ), QAT and the pack-quantized output build on it.

pub mod math;
