//! Integer quantization math, on plain f32 slices.
//!
//! `b` bits, signed range `[qmin, qmax] = [−2^(b−1), 2^(b−1) − 1]`.
//!
//! - Asymmetric: `rmin = min(0, min w)`, `rmax = max(0, max w)` over the group (so 0 is always
//!   representable); `S = (rmax − rmin) / (qmax − qmin)` (`S = 1` if that is 0);
//!   `Z = clamp(round(qmin − rmin / S), qmin, qmax)`.
//! - Symmetric: `S = max|w| / ((qmax − qmin) / 2)`, `Z = 0` (compressed-tensors' rule), or
//!   ggml's `S = m / qmin` where `m` is the signed value of largest magnitude (mapped exactly to
//!   `qmin`, one more level than the first rule uses; `S` is negative when `m > 0`).
//!   [`symmetric_candidates`] gives both; RTN and the calibrated methods keep whichever of them
//!   and their least-squares refits (`Σ w·q / Σ q²` over the codes each gives) quantizes the
//!   group with the least squared error (`rtn::stored_scale_zero`).
//! - `q = clamp(round(w / S) + Z, qmin, qmax)`, `ŵ = (q − Z) · S`.
//!
//! Rounding is half-to-even, as `torch.round`. A clip ratio `c ∈ (0, 1]` shrinks the range
//! before the scale is computed (`rmin·c`, `rmax·c`), which MSE clipping searches over.

/// The signed integer range of `bits`-bit quantization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantRange {
    /// Smallest code, −2^(bits−1).
    pub qmin: i32,
    /// Largest code, 2^(bits−1) − 1.
    pub qmax: i32,
}

impl QuantRange {
    /// The range of `bits` (2..=8) bits.
    pub fn new(bits: u8) -> Self {
        assert!((2..=8).contains(&bits), "bits {bits} outside 2..=8");
        // The format owns the code range (the packing offset is −qmin).
        use compress_format::pack_quantized::{code_max, code_min};
        Self {
            qmin: code_min(bits),
            qmax: code_max(bits),
        }
    }
}

/// Scale and zero point of one group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleZero {
    /// Step between codes.
    pub scale: f32,
    /// Code of the real value 0 (0 when symmetric).
    pub zero: i32,
}

/// Scale and zero point for values spanning `[min, max]`, clipped by `clip`.
pub fn scale_zero(min: f32, max: f32, range: QuantRange, symmetric: bool, clip: f32) -> ScaleZero {
    let (qmin, qmax) = (range.qmin as f32, range.qmax as f32);
    if symmetric {
        let absmax = min.abs().max(max.abs()) * clip;
        let scale = absmax / ((qmax - qmin) / 2.0);
        return ScaleZero {
            scale: if scale > 0.0 && scale.is_finite() {
                scale
            } else {
                1.0
            },
            zero: 0,
        };
    }
    let rmin = min.min(0.0) * clip;
    let rmax = max.max(0.0) * clip;
    let mut scale = (rmax - rmin) / (qmax - qmin);
    if scale <= 0.0 || !scale.is_finite() {
        scale = 1.0;
    }
    ScaleZero {
        scale,
        zero: zero_point(rmin, scale, range),
    }
}

/// The two symmetric scales for values spanning `[min, max]` clipped by `clip`:
/// compressed-tensors' `max|w|·c / ((qmax − qmin) / 2)` and ggml's `m·c / qmin` (`m` the signed
/// value of largest magnitude). A zero or non-finite scale becomes 1.
pub fn symmetric_candidates(min: f32, max: f32, range: QuantRange, clip: f32) -> [ScaleZero; 2] {
    let ct = scale_zero(min, max, range, true, clip);
    let m = if -min > max { min } else { max };
    let scale = m * clip / range.qmin as f32;
    let ggml = ScaleZero {
        scale: if scale != 0.0 && scale.is_finite() {
            scale
        } else {
            1.0
        },
        zero: 0,
    };
    [ct, ggml]
}

/// Squared error of quantizing `values` with `sz`.
pub fn squared_error(values: &[f32], sz: ScaleZero, range: QuantRange) -> f32 {
    values
        .iter()
        .map(|&w| {
            let d = w - dequantize(quantize(w, sz, range), sz);
            d * d
        })
        .sum()
}

/// The asymmetric zero point for clipped range start `rmin` (≤ 0) and step `scale`:
/// `clamp(round(qmin − rmin / S), qmin, qmax)`.
pub fn zero_point(rmin: f32, scale: f32, range: QuantRange) -> i32 {
    let (qmin, qmax) = (range.qmin as f32, range.qmax as f32);
    (qmin - rmin / scale).round_ties_even().clamp(qmin, qmax) as i32
}

/// Round half to even, as `f32::round_ties_even`, without the libm call that function is on
/// targets without SSE4.1, so loops vectorize. For |x| < 2²³, adding ±2²³ (the sign of x)
/// puts the sum where the f32 spacing is exactly 1, so the FPU's default nearest-even rounding
/// does the work and subtracting it back is exact; from 2²³ up every f32 is an integer.
#[inline]
pub fn round_even(x: f32) -> f32 {
    const TWO_23: f32 = 8_388_608.0;
    let m = TWO_23.copysign(x);
    if x.abs() < TWO_23 {
        (x + m) - m
    } else {
        x
    }
}

/// The code of `w`: `clamp(round(w / S) + Z, qmin, qmax)`.
#[inline]
pub fn quantize(w: f32, sz: ScaleZero, range: QuantRange) -> i32 {
    let q = round_even(w / sz.scale) + sz.zero as f32;
    q.clamp(range.qmin as f32, range.qmax as f32) as i32
}

/// The value of code `q`: `(q − Z) · S`.
pub fn dequantize(q: i32, sz: ScaleZero) -> f32 {
    (q - sz.zero) as f32 * sz.scale
}

/// Min and max of a slice, with 0 included (`(0, 0)` when empty).
pub fn min_max(values: &[f32]) -> (f32, f32) {
    values
        .iter()
        .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// Quantizes `values` as one group; returns the codes and the group's scale/zero.
pub fn quantize_group(
    values: &[f32],
    range: QuantRange,
    symmetric: bool,
    clip: f32,
) -> (Vec<i32>, ScaleZero) {
    let (lo, hi) = min_max(values);
    let sz = scale_zero(lo, hi, range, symmetric, clip);
    (values.iter().map(|&w| quantize(w, sz, range)).collect(), sz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges() {
        assert_eq!(QuantRange::new(4), QuantRange { qmin: -8, qmax: 7 });
        assert_eq!(
            QuantRange::new(8),
            QuantRange {
                qmin: -128,
                qmax: 127
            }
        );
        assert_eq!(QuantRange::new(2), QuantRange { qmin: -2, qmax: 1 });
    }

    #[test]
    fn asymmetric_worked_example() {
        // [-1, 3] at 4 bits: S = 4/15, Z = round(-8 + 15/4) = round(-4.25) = -4.
        let r = QuantRange::new(4);
        let sz = scale_zero(-1.0, 3.0, r, false, 1.0);
        assert!((sz.scale - 4.0 / 15.0).abs() < 1e-7);
        assert_eq!(sz.zero, -4);
        assert_eq!(quantize(3.0, sz, r), 7);
        assert_eq!(quantize(-1.0, sz, r), -8);
        assert_eq!(quantize(0.0, sz, r), -4);
    }

    #[test]
    fn half_rounds_to_even() {
        let r = QuantRange::new(8);
        let sz = ScaleZero {
            scale: 1.0,
            zero: 0,
        };
        assert_eq!(quantize(2.5, sz, r), 2);
        assert_eq!(quantize(3.5, sz, r), 4);
        assert_eq!(quantize(-2.5, sz, r), -2);
    }

    #[test]
    fn round_even_matches_std() {
        for x in [
            0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 4194303.5, 8388609.0, -0.0,
        ] {
            assert_eq!(round_even(x), x.round_ties_even(), "{x}");
        }
        assert!(round_even(f32::NAN).is_nan());
    }

    proptest! {
        #[test]
        fn round_even_is_round_ties_even(x in any::<f32>().prop_filter("finite", |x| x.is_finite())) {
            prop_assert_eq!(round_even(x), x.round_ties_even());
        }

        #[test]
        fn round_even_on_halves_and_small_values(k in -33_554_432i32..33_554_432, y in -300.0f32..300.0) {
            let x = k as f32 * 0.5;
            prop_assert_eq!(round_even(x), x.round_ties_even(), "x {}", x);
            prop_assert_eq!(round_even(y), y.round_ties_even(), "y {}", y);
        }

        #[test]
        fn codes_in_range_zero_exact_error_bounded(
            values in prop::collection::vec(-10.0f32..10.0, 1..64),
            bits in 2u8..=8,
            symmetric in any::<bool>(),
        ) {
            let r = QuantRange::new(bits);
            let (codes, sz) = quantize_group(&values, r, symmetric, 1.0);
            prop_assert!(sz.zero >= r.qmin && sz.zero <= r.qmax);
            prop_assert_eq!(dequantize(quantize(0.0, sz, r), sz), 0.0);
            // With clip 1 every value is inside the clip range, so every error is at most half
            // a step (plus float slack); symmetric ±max|w| sits at ±(qmax−qmin)/2 codes, at most
            // half a code beyond the clamped end.
            for (&w, &q) in values.iter().zip(&codes) {
                prop_assert!(q >= r.qmin && q <= r.qmax);
                let err = (w - dequantize(q, sz)).abs();
                let slack = 4.0 * f32::EPSILON * w.abs().max(1.0);
                prop_assert!(err <= sz.scale / 2.0 + slack, "w {} err {} S {}", w, err, sz.scale);
            }
        }
    }
}
