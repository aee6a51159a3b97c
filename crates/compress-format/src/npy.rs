//! NumPy `.npy` (format version 1.0) writing for f32 arrays.
//!
//! Layout: magic `\x93NUMPY`, version bytes `1 0`, a little-endian u16 header length, an ASCII
//! Python-dict header `{'descr': '<f4', 'fortran_order': False, 'shape': (a, b), }` padded with
//! spaces and ended by `\n` so that magic + header is a multiple of 64 bytes, then the data,
//! C order, little-endian.

use std::path::Path;

use crate::atomic::write_atomic;
use crate::error::{FormatError, Result};

/// Encodes an f32 array of `shape` as `.npy` bytes.
pub fn encode_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_str = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_str}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + values.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes an f32 array to `path` atomically; `values.len()` must equal the product of `shape`.
pub fn write_f32(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != values.len() {
        return Err(FormatError::Shape {
            name: path.display().to_string(),
            expected: shape.to_vec(),
            got: vec![values.len()],
        });
    }
    write_atomic(path, &encode_f32(shape, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_data_follows() {
        let bytes = encode_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
        assert!(header.contains("'shape': (2, 3)"), "{header}");
        assert!(header.ends_with('\n'));
        let data = &bytes[10 + hlen..];
        assert_eq!(data.len(), 24);
        assert_eq!(f32::from_le_bytes(data[20..24].try_into().unwrap()), 6.0);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let dir = std::env::temp_dir().join(format!("npy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(write_f32(&dir.join("x.npy"), &[2, 2], &[1.0]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
