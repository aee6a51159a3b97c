//! Reading and writing the raw tensors of a packed layer: dtype/shape checks and byte codecs.

use super::WeightQuant;
use crate::error::{FormatError, Result};
use crate::safetensors::{Dtype, TensorRef};

/// Errors naming `name` if any value of `v` (row length `cols`) is outside `wq`'s signed range.
pub(super) fn check_range(name: &str, v: &[i8], cols: usize, wq: &WeightQuant) -> Result<()> {
    let (lo, hi) = (wq.qmin(), wq.qmax());
    match v.iter().position(|&x| !(lo..=hi).contains(&i32::from(x))) {
        None => Ok(()),
        Some(i) => Err(FormatError::tensor(
            name,
            format!(
                "value {} at [{}, {}] is outside the signed {}-bit range [{lo}, {hi}]",
                v[i],
                i / cols.max(1),
                i % cols.max(1),
                wq.num_bits
            ),
        )),
    }
}

/// Little-endian bytes of `words`.
pub(super) fn i32_bytes(words: &[i32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Decodes little-endian i32 bytes.
pub(super) fn i32_values(data: &[u8]) -> Vec<i32> {
    data.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A Dtype error for `t`.
pub(super) fn dtype_error(t: &TensorRef<'_>, msg: &str) -> FormatError {
    FormatError::Dtype {
        name: t.name.to_string(),
        dtype: t.dtype.name().into(),
        msg: msg.into(),
    }
}

/// Errors unless `t` has exactly `shape`.
pub(super) fn expect_shape(t: &TensorRef<'_>, shape: &[usize]) -> Result<()> {
    if t.shape != shape {
        return Err(FormatError::Shape {
            name: t.name.to_string(),
            expected: shape.to_vec(),
            got: t.shape.to_vec(),
        });
    }
    Ok(())
}

/// Errors unless `t` has `dtype` and `shape`.
pub(super) fn expect(t: &TensorRef<'_>, dtype: Dtype, shape: &[usize]) -> Result<()> {
    if t.dtype != dtype {
        return Err(dtype_error(t, &format!("expected {dtype}")));
    }
    expect_shape(t, shape)
}

/// Reads `[out, in]` from a `weight_shape` tensor (I64, or I32, of shape `[2]`).
pub(crate) fn read_weight_shape(t: &TensorRef<'_>) -> Result<(usize, usize)> {
    expect_shape(t, &[2])?;
    let v: Vec<i64> = match t.dtype {
        Dtype::I64 => t
            .data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8-byte chunk")))
            .collect(),
        Dtype::I32 => i32_values(t.data).into_iter().map(i64::from).collect(),
        _ => return Err(dtype_error(t, "expected I64 (or I32) [out, in]")),
    };
    match (usize::try_from(v[0]), usize::try_from(v[1])) {
        (Ok(out), Ok(inn)) => Ok((out, inn)),
        _ => Err(FormatError::tensor(
            t.name,
            format!("negative weight shape {v:?}"),
        )),
    }
}
