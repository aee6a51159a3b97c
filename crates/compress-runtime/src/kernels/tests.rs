//! Every kernel implementation against [`reference`] on random weights and activations.

use half::{bf16, f16};

use super::dispatch::{matmul_with, quantize_q8_with, Isa};
use super::*;

/// Small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
}

fn isas() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|i| i.available()).collect()
}

fn acts(rng: &mut Rng, m: usize, cols: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..m * cols).map(|_| rng.f() * 3.0).collect();
    // An all-zero block (d = 0) and an outlier.
    if cols >= 64 {
        x[32..64].fill(0.0);
        x[cols - 1] = 40.0;
    }
    x
}

fn scales(rng: &mut Rng, n: usize, kind: usize) -> Scales {
    let v: Vec<f32> = (0..n).map(|_| 0.002 + 0.02 * rng.f().abs()).collect();
    match kind % 3 {
        0 => Scales::F32(v),
        1 => Scales::F16(v.iter().map(|&s| f16::from_f32(s)).collect()),
        _ => Scales::Bf16(v.iter().map(|&s| bf16::from_f32(s)).collect()),
    }
}

fn int4(rng: &mut Rng, rows: usize, cols: usize, gs: usize, kind: usize, asym: bool) -> Weight {
    let ng = rows * cols / gs;
    Weight::Int4(Int4Weight::new(
        rows,
        cols,
        gs,
        Bytes::from_vec((0..rows * cols / 2).map(|_| rng.byte()).collect()),
        scales(rng, ng, kind),
        asym.then(|| (0..ng).map(|_| rng.byte() % 16).collect()),
    ))
}

fn int8(rng: &mut Rng, rows: usize, cols: usize, gs: usize, kind: usize, asym: bool) -> Weight {
    let ng = rows * cols / gs;
    Weight::Int8(Int8Weight {
        rows,
        cols,
        group_size: gs,
        data: (0..rows * cols).map(|_| rng.byte() as i8).collect(),
        scales: scales(rng, ng, kind),
        zeros: asym.then(|| (0..ng).map(|_| rng.byte() as i8 / 4).collect()),
    })
}

fn float(rng: &mut Rng, rows: usize, cols: usize, dtype: FloatDtype) -> Weight {
    let v: Vec<f32> = (0..rows * cols).map(|_| rng.f()).collect();
    let data: Vec<u8> = match dtype {
        FloatDtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        FloatDtype::F16 => v
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect(),
        FloatDtype::Bf16 => v
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect(),
    };
    Weight::Float(FloatWeight {
        rows,
        cols,
        dtype,
        data: Bytes::from_vec(data),
    })
}

/// `Σ |term|` of output `(t, r)`: the scale of the float rounding any summation order makes.
fn magnitude(w: &Weight, x: &[f32], t: usize, r: usize) -> f32 {
    let cols = w.cols();
    let x = &x[t * cols..(t + 1) * cols];
    (0..cols)
        .map(|c| {
            let (code, off, s) = match w {
                Weight::Int4(w) => {
                    let gi = r * cols / w.group_size + c / w.group_size;
                    let o = w
                        .offsets
                        .as_ref()
                        .map_or(f32::from(INT4_OFFSET), |o| f32::from(o[gi]));
                    (
                        f32::from(reference::int4_code(w, r, c)),
                        o,
                        w.scales.get(gi),
                    )
                }
                Weight::Int8(w) => {
                    let gi = r * cols / w.group_size + c / w.group_size;
                    let z = w.zeros.as_ref().map_or(0.0, |z| f32::from(z[gi]));
                    (f32::from(w.data[r * cols + c]), z, w.scales.get(gi))
                }
                Weight::Float(w) => (w.get(r, c), 0.0, 1.0),
            };
            s.abs() * (code.abs() + off.abs()) * x[c].abs()
        })
        .sum()
}

/// Largest `|got − want| / (Σ|terms| + tiny)` over all outputs.
fn worst(w: &Weight, x: &[f32], m: usize, got: &[f32], want: &[f32]) -> f32 {
    let rows = w.rows();
    let mut worst = 0f32;
    for t in 0..m {
        for r in 0..rows {
            let (g, e) = (got[t * rows + r], want[t * rows + r]);
            assert!(g.is_finite(), "output ({t}, {r}) is {g}");
            worst = worst.max((g - e).abs() / (magnitude(w, x, t, r) + 1e-30));
        }
    }
    worst
}

/// Runs `w` with every implementation in both modes and compares with the reference.
fn check(w: &Weight, x: &[f32], m: usize, what: &str) {
    for mode in [ActMode::Q8, ActMode::F32] {
        let input = Input::new(x, m, w.cols(), mode);
        let mut want = vec![0f32; m * w.rows()];
        reference::matmul(w, &input, &mut want);
        assert!(
            want.iter().any(|&v| v != 0.0),
            "{what}: degenerate reference"
        );
        for isa in isas() {
            let mut got = vec![f32::NAN; m * w.rows()];
            matmul_with(isa, w, &input, &mut got);
            let e = worst(w, x, m, &got, &want);
            assert!(e < 1e-5, "{what} {mode:?} {isa:?}: relative error {e}");
        }
    }
}

/// (cols, group size) pairs: groups 32/64/96/128 and per-channel.
fn shapes() -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for cols in [32, 64, 192, 4096] {
        for gs in [32, 64, 96, 128, cols] {
            if cols % gs == 0 && !v.contains(&(cols, gs)) {
                v.push((cols, gs));
            }
        }
    }
    v
}

fn quantized(make: fn(&mut Rng, usize, usize, usize, usize, bool) -> Weight, name: &str) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut kind = 0;
    for (cols, gs) in shapes() {
        for m in [1, 3, 17] {
            for asym in [false, true] {
                // 16 and 72 rows take the interleaved layout when m > 1.
                let rows = [1, 16, 13, 72][kind % 4];
                let w = make(&mut rng, rows, cols, gs, kind, asym);
                let x = acts(&mut rng, m, cols);
                check(
                    &w,
                    &x,
                    m,
                    &format!(
                        "{name} {rows}x{cols} g{gs} m{m} asym={asym} scales#{}",
                        kind % 3
                    ),
                );
                kind += 1;
            }
        }
    }
}

#[test]
fn int4_matches_reference() {
    quantized(int4, "int4");
}

#[test]
fn int8_matches_reference() {
    quantized(int8, "int8");
}

#[test]
fn float_matches_reference() {
    let mut rng = Rng(7);
    for dtype in [FloatDtype::F32, FloatDtype::F16, FloatDtype::Bf16] {
        for (rows, cols) in [(1, 1), (3, 13), (37, 100), (70, 4096)] {
            for m in [1, 3, 17] {
                let w = float(&mut rng, rows, cols, dtype);
                let x = acts(&mut rng, m, cols);
                check(&w, &x, m, &format!("{dtype:?} {rows}x{cols} m{m}"));
            }
        }
    }
}

#[test]
fn large_parallel_matches_reference() {
    // Enough rows for many rayon chunks with a ragged last one, and a prefill-sized m; 304
    // rows (a multiple of 8) run the interleaved kernels.
    let mut rng = Rng(11);
    for (rows, gs, asym) in [(301, 128, true), (304, 32, false), (304, 64, true)] {
        let w = int4(&mut rng, rows, 512, gs, 1, asym);
        let x = acts(&mut rng, 33, 512);
        check(&w, &x, 33, &format!("int4 {rows}x512 g{gs} m33"));
    }
}

#[test]
fn weight_matmul_agrees_with_reference() {
    let mut rng = Rng(3);
    let w = int4(&mut rng, 64, 256, 32, 1, false);
    let x = acts(&mut rng, 2, 256);
    let input = Input::new(&x, 2, 256, ActMode::Q8);
    let (mut got, mut want) = (vec![0f32; 128], vec![0f32; 128]);
    w.matmul(&input, &mut got);
    reference::matmul(&w, &input, &mut want);
    assert!(worst(&w, &x, 2, &got, &want) < 1e-5);
}

#[test]
fn comparison_detects_a_wrong_kernel() {
    // The tolerance is tight enough to catch a wrong offset in a single group.
    let mut rng = Rng(5);
    // 8 rows run the interleaved kernels, 12 the row kernels.
    for rows in [8, 12] {
        let Weight::Int4(w) = int4(&mut rng, rows, 128, 32, 0, true) else {
            unreachable!()
        };
        let mut offs = w.offsets.clone().unwrap();
        offs[3] ^= 1;
        let bad = Weight::Int4(Int4Weight::new(
            w.rows,
            w.cols,
            w.group_size,
            Bytes::from_vec(w.data.to_vec()),
            w.scales.clone(),
            Some(offs),
        ));
        let good = Weight::Int4(w);
        for m in [1, 2] {
            let x = acts(&mut rng, m, 128);
            let input = Input::new(&x, m, 128, ActMode::Q8);
            let mut want = vec![0f32; rows * m];
            reference::matmul(&good, &input, &mut want);
            for isa in isas() {
                let mut got = vec![0f32; rows * m];
                matmul_with(isa, &bad, &input, &mut got);
                assert!(
                    worst(&good, &x, m, &got, &want) > 1e-4,
                    "{isa:?} {rows} rows m={m}: wrong offset not detected"
                );
            }
        }
    }
}

#[test]
fn quantize_matches_reference_exactly() {
    let mut rng = Rng(13);
    let mut x = acts(&mut rng, 5, 256);
    // Exact ties: d = 1, so x / d lands on k + 0.5 (rounds away from zero), both signs.
    for (i, v) in x[64..96].iter_mut().enumerate() {
        *v = if i == 0 {
            127.0
        } else {
            (i as f32 - 16.0) + 0.5
        };
    }
    // Values just below a half after scaling.
    for (i, v) in x[96..128].iter_mut().enumerate() {
        *v = if i == 0 {
            -127.0
        } else {
            0.499_999_97 * (i as f32)
        };
    }
    let want = reference::quantize_q8(&x, 5, 256);
    for isa in isas() {
        let got = quantize_q8_with(isa, &x, 5, 256);
        assert_eq!(got.q, want.q, "{isa:?} codes");
        assert_eq!(got.d, want.d, "{isa:?} scales");
        assert_eq!(got.sums, want.sums, "{isa:?} sums");
    }
}

#[test]
fn forcing_an_unavailable_isa_falls_back() {
    let mut rng = Rng(17);
    let w = int8(&mut rng, 4, 64, 32, 2, true);
    let x = acts(&mut rng, 1, 64);
    let input = Input::new(&x, 1, 64, ActMode::Q8);
    let (mut a, mut b) = (vec![0f32; 4], vec![0f32; 4]);
    for isa in Isa::ALL {
        matmul_with(isa, &w, &input, &mut a);
        reference::matmul(&w, &input, &mut b);
        assert!(worst(&w, &x, 1, &a, &b) < 1e-5, "{isa:?}");
    }
}
