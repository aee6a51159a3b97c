//! Word-aligned int32 packing of signed `b`-bit integers, bit-for-bit the
//! layout of compressed-tensors 0.15 `pack_to_int32` / `unpack_from_int32`.
//!
//! Every function takes a row-major `[rows, cols]` matrix. [`pack_rows`]
//! packs along dim 1 (weights: `packed_dim=1`), [`pack_cols`] along dim 0
//! (zero points: `packed_dim=0`). Each word holds [`pack_factor`] values,
//! least significant first, stored as `q + 2^(b−1)`; padding and unused high
//! bits are zero. Unpacking ignores padding and unused bits, as the library does.

/// Values per int32 word at `bits` bits: `32 / bits` (panics unless `bits` is `1..=8`).
pub fn pack_factor(bits: u8) -> usize {
    assert!(
        (1..=8).contains(&bits),
        "pack-quantized: bits must be 1..=8, got {bits}"
    );
    32 / usize::from(bits)
}

/// Words needed to pack `n` values at `bits` bits: `ceil(n / pack_factor(bits))`.
pub fn packed_len(n: usize, bits: u8) -> usize {
    n.div_ceil(pack_factor(bits))
}

/// Storage offset `2^(bits−1)`: a signed code `q` is stored unsigned as `q + code_offset(bits)`
/// (8 for 4 bits, 128 for 8 bits).
pub const fn code_offset(bits: u8) -> i32 {
    1 << (bits - 1)
}

/// Smallest signed code of `bits` bits, `−2^(bits−1)`.
pub const fn code_min(bits: u8) -> i32 {
    -code_offset(bits)
}

/// Largest signed code of `bits` bits, `2^(bits−1) − 1`.
pub const fn code_max(bits: u8) -> i32 {
    code_offset(bits) - 1
}

/// Stored (unsigned) form of `v`; panics if `v` is outside the signed `bits` range.
#[inline]
fn encode(v: i8, bits: u8) -> u32 {
    let u = i32::from(v) + code_offset(bits);
    assert!(
        (code_min(bits)..=code_max(bits)).contains(&i32::from(v)),
        "pack-quantized: value {v} outside the signed {bits}-bit range [{}, {}]",
        code_min(bits),
        code_max(bits)
    );
    u as u32
}

/// Signed value of the `bits`-bit field of `word` at slot `k`.
#[inline]
fn decode(word: i32, k: usize, bits: u8) -> i8 {
    let mask = (1u32 << bits) - 1;
    let u = ((word as u32) >> (k * usize::from(bits))) & mask;
    (u as i32 - code_offset(bits)) as i8
}

/// Packs `q` (`[rows, cols]`) along dim 1 into `[rows, ceil(cols / (32 / bits))]` words.
///
/// Panics if `q.len() != rows * cols`, `bits` is not `1..=8`, or a value is
/// outside `[−2^(bits−1), 2^(bits−1) − 1]`.
pub fn pack_rows(q: &[i8], rows: usize, cols: usize, bits: u8) -> Vec<i32> {
    let f = pack_factor(bits);
    assert_eq!(q.len(), rows * cols, "pack_rows: q is not [{rows}, {cols}]");
    let wpr = cols.div_ceil(f);
    let mut out = vec![0i32; rows * wpr];
    if wpr == 0 {
        return out;
    }
    for (src, dst) in q.chunks_exact(cols).zip(out.chunks_exact_mut(wpr)) {
        for (w, chunk) in dst.iter_mut().zip(src.chunks(f)) {
            let mut word = 0u32;
            for (k, &v) in chunk.iter().enumerate() {
                word |= encode(v, bits) << (k * usize::from(bits));
            }
            *w = word as i32;
        }
    }
    out
}

/// Inverse of [`pack_rows`]: `packed` is `[rows, ceil(cols / (32 / bits))]`; returns `[rows, cols]`.
///
/// Panics if `packed` has the wrong length or `bits` is not `1..=8`.
pub fn unpack_rows(packed: &[i32], rows: usize, cols: usize, bits: u8) -> Vec<i8> {
    let f = pack_factor(bits);
    let wpr = cols.div_ceil(f);
    assert_eq!(
        packed.len(),
        rows * wpr,
        "unpack_rows: packed is not [{rows}, {wpr}]"
    );
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let row = &packed[r * wpr..(r + 1) * wpr];
        out.extend((0..cols).map(|c| decode(row[c / f], c % f, bits)));
    }
    out
}

/// Packs `q` (`[rows, cols]`) along dim 0 into `[ceil(rows / (32 / bits)), cols]` words.
///
/// This is how zero points are stored. Panics like [`pack_rows`].
pub fn pack_cols(q: &[i8], rows: usize, cols: usize, bits: u8) -> Vec<i32> {
    let f = pack_factor(bits);
    assert_eq!(q.len(), rows * cols, "pack_cols: q is not [{rows}, {cols}]");
    let mut out = vec![0u32; rows.div_ceil(f) * cols];
    for (r, row) in q.chunks_exact(cols.max(1)).enumerate().take(rows) {
        let shift = (r % f) * usize::from(bits);
        let dst = &mut out[(r / f) * cols..(r / f + 1) * cols];
        for (w, &v) in dst.iter_mut().zip(row) {
            *w |= encode(v, bits) << shift;
        }
    }
    out.into_iter().map(|w| w as i32).collect()
}

/// Inverse of [`pack_cols`]: `packed` is `[ceil(rows / (32 / bits)), cols]`; returns `[rows, cols]`.
///
/// Panics if `packed` has the wrong length or `bits` is not `1..=8`.
pub fn unpack_cols(packed: &[i32], rows: usize, cols: usize, bits: u8) -> Vec<i8> {
    let f = pack_factor(bits);
    let words = rows.div_ceil(f);
    assert_eq!(
        packed.len(),
        words * cols,
        "unpack_cols: packed is not [{words}, {cols}]"
    );
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let src = &packed[(r / f) * cols..(r / f + 1) * cols];
        out.extend(src.iter().map(|&w| decode(w, r % f, bits)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The test vector used with the Python library: `qmin + ((7i + 3) mod 2^b)`, `pf + 3` values.
    fn row_vector(bits: u8) -> Vec<i8> {
        let n = pack_factor(bits) + 3;
        let qmin = code_min(bits);
        (0..n as i32)
            .map(|i| (qmin + (i * 7 + 3) % (1 << bits)) as i8)
            .collect()
    }

    /// `qmin + ((5r + 3c + 1) mod 2^b)` as a `[rows, cols]` matrix.
    fn col_matrix(bits: u8, rows: usize, cols: usize) -> Vec<i8> {
        let qmin = code_min(bits);
        (0..rows as i32)
            .flat_map(|r| {
                (0..cols as i32).map(move |c| (qmin + (r * 5 + c * 3 + 1) % (1 << bits)) as i8)
            })
            .collect()
    }

    #[test]
    fn matches_compressed_tensors_pack_to_int32() {
        // Expected words produced once with compressed-tensors 0.15.0.1 (the
        // repo .venv stack):
        //   pack_to_int32(torch.tensor([row_vector(b)], dtype=torch.int8), b).tolist()[0]
        let expected: [(u8, &[i8], [i32; 2]); 7] = [
            (
                2,
                &[
                    1, 0, -1, -2, 1, 0, -1, -2, 1, 0, -1, -2, 1, 0, -1, -2, 1, 0, -1,
                ],
                [454761243, 27],
            ),
            (
                3,
                &[-1, -2, -3, -4, 3, 2, 1, 0, -1, -2, -3, -4, 3],
                [328691795, 449],
            ),
            (
                4,
                &[-5, 2, -7, 0, 7, -2, 5, -4, 3, -6, 1],
                [1299153315, 2347],
            ),
            (5, &[-13, -6, 1, 8, 15, -10, -3, 4, 11], [234636611, 28301]),
            (6, &[-29, -22, -15, -8, -1, 6, 13, 20], [526455427, 215910]),
            (7, &[-61, -54, -47, -40, -33, -26, -19], [50611459, 742175]),
            (
                8,
                &[-125, -118, -111, -104, -97, -90, -83],
                [403769859, 2958879],
            ),
        ];
        for (bits, q, words) in expected {
            assert_eq!(row_vector(bits), q, "test vector for {bits} bits");
            assert_eq!(pack_rows(q, 1, q.len(), bits), words, "{bits} bits");
            assert_eq!(unpack_rows(&words, 1, q.len(), bits), q, "{bits} bits");
        }
        // pack_to_int32(torch.tensor([[127, 0, -128, 5], [-1, -1, -1, -1]], dtype=torch.int8), 8)
        let q = [127, 0, -128, 5, -1, -1, -1, -1];
        assert_eq!(pack_rows(&q, 2, 4, 8), [-2063564545, 2139062143]);
        // pack_to_int32(torch.tensor([[7] * 8], dtype=torch.int8), 4)
        assert_eq!(pack_rows(&[7; 8], 1, 8, 4), [-1]);
    }

    #[test]
    fn matches_compressed_tensors_pack_along_dim0() {
        // pack_to_int32(torch.tensor(col_matrix(b, rows, cols), dtype=torch.int8), b,
        //               packed_dim=0).tolist() with compressed-tensors 0.15.0.1.
        let cases: [(u8, usize, usize, &[i32]); 3] = [
            (
                4,
                10,
                3,
                &[1336216417, 1926774420, -1525980729, 233, 28, 79],
            ),
            (8, 5, 2, &[269157889, 319686916, 21, 24]),
            (3, 11, 2, &[832393457, 216696716, 3, 6]),
        ];
        for (bits, rows, cols, words) in cases {
            let q = col_matrix(bits, rows, cols);
            assert_eq!(pack_cols(&q, rows, cols, bits), words, "{bits} bits");
            assert_eq!(unpack_cols(words, rows, cols, bits), q, "{bits} bits");
        }
        assert_eq!(col_matrix(4, 10, 3)[..6], [-7, -4, -1, -2, 1, 4]);
    }

    #[test]
    fn sizes_and_padding() {
        assert_eq!(
            (1..=8).map(pack_factor).collect::<Vec<_>>(),
            [32, 16, 10, 8, 6, 5, 4, 4]
        );
        assert_eq!(packed_len(0, 4), 0);
        assert_eq!(packed_len(8, 4), 1);
        assert_eq!(packed_len(9, 4), 2);
        assert_eq!(packed_len(11, 3), 2);
        // Padding slots hold stored 0 (= qmin after unpacking); unused bits are 0.
        let p = pack_rows(&[0], 1, 1, 4);
        assert_eq!(p, [8]);
        assert_eq!(pack_rows(&[0; 10], 1, 10, 3), [0x2492_4924]);
        assert!(pack_rows(&[], 0, 5, 4).is_empty());
        assert!(pack_rows(&[], 3, 0, 4).is_empty());
        assert!(unpack_rows(&[], 3, 0, 4).is_empty());
        assert!(pack_cols(&[], 0, 4, 4).is_empty());
    }

    #[test]
    fn code_range_and_offset() {
        assert_eq!((code_min(4), code_max(4), code_offset(4)), (-8, 7, 8));
        assert_eq!((code_min(8), code_max(8), code_offset(8)), (-128, 127, 128));
        assert_eq!((code_min(2), code_max(2), code_offset(2)), (-2, 1, 2));
    }

    #[test]
    #[should_panic(expected = "outside the signed 4-bit range [-8, 7]")]
    fn out_of_range_value_panics() {
        pack_rows(&[8], 1, 1, 4);
    }

    #[test]
    #[should_panic(expected = "bits must be 1..=8")]
    fn nine_bits_panics() {
        pack_factor(9);
    }

    /// Random bits in 2..=8, a shape with odd sizes allowed, and in-range values.
    fn matrix() -> impl Strategy<Value = (u8, usize, usize, Vec<i8>)> {
        (2u8..=8, 0usize..13, 0usize..41).prop_flat_map(|(bits, rows, cols)| {
            let lo = -(1i16 << (bits - 1));
            let hi = (1i16 << (bits - 1)) - 1;
            let vals = proptest::collection::vec((lo..=hi).prop_map(|v| v as i8), rows * cols);
            (Just(bits), Just(rows), Just(cols), vals)
        })
    }

    proptest! {
        #[test]
        fn rows_round_trip((bits, rows, cols, q) in matrix()) {
            let p = pack_rows(&q, rows, cols, bits);
            prop_assert_eq!(p.len(), rows * packed_len(cols, bits));
            prop_assert_eq!(unpack_rows(&p, rows, cols, bits), q);
        }

        #[test]
        fn cols_round_trip((bits, rows, cols, q) in matrix()) {
            let p = pack_cols(&q, rows, cols, bits);
            prop_assert_eq!(p.len(), packed_len(rows, bits) * cols);
            prop_assert_eq!(unpack_cols(&p, rows, cols, bits), q.clone());
            // Packing along dim 0 is packing the transpose along dim 1, transposed.
            let t: Vec<i8> = (0..cols).flat_map(|c| (0..rows).map(move |r| (r, c))).map(|(r, c)| q[r * cols + c]).collect();
            let pt = pack_rows(&t, cols, rows, bits);
            let w = packed_len(rows, bits);
            let back: Vec<i32> = (0..w).flat_map(|j| (0..cols).map(move |c| (j, c))).map(|(j, c)| pt[c * w + j]).collect();
            prop_assert_eq!(p, back);
        }

        #[test]
        fn unused_bits_are_zero((bits, rows, cols, q) in matrix()) {
            let used = pack_factor(bits) as u32 * u32::from(bits);
            if used < 32 {
                for w in pack_rows(&q, rows, cols, bits) {
                    prop_assert_eq!((w as u32) >> used, 0);
                }
            }
        }
    }
}
