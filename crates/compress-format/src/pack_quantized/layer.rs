//! One quantized Linear layer in memory, and its `pack-quantized` tensors.

use super::packing::{pack_cols, pack_rows, packed_len, unpack_cols, unpack_rows};
use super::tensor_io::{
    check_range, dtype_error, expect, expect_shape, i32_bytes, i32_values, read_weight_shape,
};
use super::{round_to_dtype, QuantStrategy, WeightQuant};
use crate::error::{FormatError, Result};
use crate::safetensors::{Dtype, ModelFiles, TensorOut, TensorRef};

/// One quantized linear layer in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedLinear {
    /// Rows of the weight (`out_features`).
    pub out_features: usize,
    /// Columns of the weight (`in_features`).
    pub in_features: usize,
    /// Signed quantized weight, row-major `[out, in]`, each in `[qmin, qmax]`.
    pub q: Vec<i8>,
    /// Scales as stored, row-major in [`WeightQuant::scale_shape`] (`[1]`, `[out, 1]` or `[out, n_groups]`).
    pub scales: Vec<f32>,
    /// Signed zero points shaped like `scales`; `None` exactly when symmetric.
    pub zero_points: Option<Vec<i8>>,
}

impl QuantizedLinear {
    /// Checks sizes, value ranges and zero-point presence against `wq`; errors name `prefix.<tensor>`.
    pub fn check(&self, wq: &WeightQuant, prefix: &str) -> Result<()> {
        wq.validate()?;
        let (out, inn) = (self.out_features, self.in_features);
        if self.q.len() != out * inn {
            return Err(FormatError::Shape {
                name: format!("{prefix}.weight"),
                expected: vec![out, inn],
                got: vec![self.q.len()],
            });
        }
        let scale_shape = wq.scale_shape(out, inn);
        let n_scales: usize = scale_shape.iter().product();
        let scale_name = format!("{prefix}.weight_scale");
        if self.scales.len() != n_scales {
            return Err(FormatError::Shape {
                name: scale_name,
                expected: scale_shape,
                got: vec![self.scales.len()],
            });
        }
        if let Some(i) = self.scales.iter().position(|s| !s.is_finite()) {
            return Err(FormatError::tensor(
                scale_name,
                format!("scale {} at flat index {i} is not finite", self.scales[i]),
            ));
        }
        check_range(&format!("{prefix}.weight"), &self.q, inn, wq)?;
        let zp_name = format!("{prefix}.weight_zero_point");
        match (wq.symmetric, &self.zero_points) {
            (true, None) => Ok(()),
            (true, Some(_)) => Err(FormatError::tensor(
                zp_name,
                "the scheme is symmetric but zero points are given",
            )),
            (false, None) => Err(FormatError::tensor(
                zp_name,
                "the scheme is asymmetric but no zero points are given",
            )),
            (false, Some(z)) if z.len() != n_scales => Err(FormatError::Shape {
                name: zp_name,
                expected: wq.scale_shape(out, inn),
                got: vec![z.len()],
            }),
            (false, Some(z)) => check_range(&zp_name, z, *scale_shape.last().unwrap_or(&1), wq),
        }
    }

    /// The reference dequantization `ŵ = (q − z)·s` in f32, row-major `[out, in]`.
    ///
    /// Uses the scales exactly as stored in `self.scales` (round them to the
    /// storage dtype first). Loaders with F16/BF16 scales return this value
    /// rounded once to that dtype. Panics if [`Self::check`] fails.
    pub fn dequantize(&self, wq: &WeightQuant) -> Vec<f32> {
        if let Err(e) = self.check(wq, "QuantizedLinear") {
            panic!("QuantizedLinear::dequantize: {e}");
        }
        let (out, inn) = (self.out_features, self.in_features);
        let mut w = Vec::with_capacity(out * inn);
        for (r, row) in self.q.chunks_exact(inn.max(1)).take(out).enumerate() {
            let base = wq.scale_index(r, 0, inn);
            w.extend(row.iter().enumerate().map(|(c, &q)| {
                let i = base + wq.group_of(c);
                let z = self.zero_points.as_ref().map_or(0, |z| i32::from(z[i]));
                (i32::from(q) - z) as f32 * self.scales[i]
            }));
        }
        w
    }

    /// The layer's tensors: `prefix.weight_packed`, `.weight_scale`, `.weight_zero_point` (asymmetric only), `.weight_shape`.
    ///
    /// `weight_packed` is I32 `[out, ceil(in / f)]`; `weight_scale` has
    /// `scale_dtype` (F32, F16, BF16 or F64) and every scale must already be
    /// representable in it (see [`round_to_dtype`]); zero points are I32
    /// `[ceil(out / f), n_groups]` packed along dim 0 for channel/group and
    /// I8 `[1]` for tensor; `weight_shape` is I64 `[out, in]`.
    pub fn to_tensors(
        &self,
        prefix: &str,
        wq: &WeightQuant,
        scale_dtype: Dtype,
    ) -> Result<Vec<TensorOut>> {
        self.check(wq, prefix)?;
        let scale_name = format!("{prefix}.weight_scale");
        if !scale_dtype.is_float() {
            return Err(FormatError::Dtype {
                name: scale_name,
                dtype: scale_dtype.name().into(),
                msg: "scales must be stored as F32, F16, BF16 or F64".into(),
            });
        }
        let mut rounded = self.scales.clone();
        round_to_dtype(&mut rounded, scale_dtype);
        if let Some(i) = (0..rounded.len()).find(|&i| rounded[i] != self.scales[i]) {
            return Err(FormatError::tensor(
                scale_name,
                format!(
                    "scale {} at flat index {i} is not representable in {scale_dtype} (would be \
                     stored as {}); round scales with round_to_dtype before quantizing",
                    self.scales[i], rounded[i]
                ),
            ));
        }
        let (out, inn, bits) = (self.out_features, self.in_features, wq.num_bits);
        let packed = pack_rows(&self.q, out, inn, bits);
        let mut tensors = vec![
            TensorOut::new(
                format!("{prefix}.weight_packed"),
                Dtype::I32,
                vec![out, packed_len(inn, bits)],
                i32_bytes(&packed),
            )?,
            TensorOut::from_f32(
                scale_name,
                wq.scale_shape(out, inn),
                &self.scales,
                scale_dtype,
            )?,
        ];
        if let Some(z) = &self.zero_points {
            let name = format!("{prefix}.weight_zero_point");
            tensors.push(match wq.strategy {
                QuantStrategy::Tensor => {
                    TensorOut::new(name, Dtype::I8, vec![1], vec![z[0] as u8])?
                }
                QuantStrategy::Channel | QuantStrategy::Group => {
                    let ng = wq.num_groups(inn);
                    let words = pack_cols(z, out, ng, bits);
                    TensorOut::new(
                        name,
                        Dtype::I32,
                        vec![packed_len(out, bits), ng],
                        i32_bytes(&words),
                    )?
                }
            });
        }
        let shape: Vec<u8> = [out as i64, inn as i64]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        tensors.push(TensorOut::new(
            format!("{prefix}.weight_shape"),
            Dtype::I64,
            vec![2],
            shape,
        )?);
        Ok(tensors)
    }

    /// Reads the layer at `prefix` (inverse of [`Self::to_tensors`]), validating dtypes and shapes.
    pub fn from_files(files: &ModelFiles, prefix: &str, wq: &WeightQuant) -> Result<Self> {
        let view = PackedLayerView::open(files, prefix, wq)?;
        let layer = QuantizedLinear {
            out_features: view.out_features,
            in_features: view.in_features,
            q: unpack_rows(
                &i32_values(view.packed.data),
                view.out_features,
                view.in_features,
                wq.num_bits,
            ),
            scales: view.scales.to_f32()?,
            zero_points: view.zero_points,
        };
        layer.check(wq, prefix)?;
        Ok(layer)
    }
}

/// A packed layer's tensors as stored, checked but not unpacked: the runtime uses the packed
/// words and scales in place.
#[derive(Debug)]
pub struct PackedLayerView<'a> {
    /// Rows of the weight.
    pub out_features: usize,
    /// Columns of the weight.
    pub in_features: usize,
    /// `weight_packed`: I32 `[out, ceil(in / (32 / bits))]`, values stored as `q + 2^(bits−1)`.
    pub packed: TensorRef<'a>,
    /// `weight_scale` (F32/F16/BF16/F64) shaped as [`WeightQuant::scale_shape`].
    pub scales: TensorRef<'a>,
    /// Signed zero points shaped like the scales (unpacked; `None` when symmetric).
    pub zero_points: Option<Vec<i8>>,
}

impl<'a> PackedLayerView<'a> {
    /// Opens the layer at `prefix`, validating dtypes and shapes (codes are not range-checked).
    pub fn open(files: &'a ModelFiles, prefix: &str, wq: &WeightQuant) -> Result<Self> {
        wq.validate()?;
        let bits = wq.num_bits;
        let (out, inn) = read_weight_shape(&files.tensor(&format!("{prefix}.weight_shape"))?)?;
        let g_idx = format!("{prefix}.weight_g_idx");
        if files.contains(&g_idx) {
            return Err(FormatError::tensor(
                g_idx,
                "activation-ordering permutations (actorder = group) are not supported",
            ));
        }
        let packed = files.tensor(&format!("{prefix}.weight_packed"))?;
        expect(&packed, Dtype::I32, &[out, packed_len(inn, bits)])?;
        let scales = files.tensor(&format!("{prefix}.weight_scale"))?;
        if !scales.dtype.is_float() {
            return Err(dtype_error(
                &scales,
                "expected a float scale (F32, F16, BF16)",
            ));
        }
        expect_shape(&scales, &wq.scale_shape(out, inn))?;
        let zp_name = format!("{prefix}.weight_zero_point");
        let zero_points = if wq.symmetric {
            if files.contains(&zp_name) {
                return Err(FormatError::tensor(
                    zp_name,
                    "present, but the scheme is symmetric (symmetric layers store no zero point)",
                ));
            }
            None
        } else {
            let zp = files.tensor(&zp_name)?;
            let z = match wq.strategy {
                QuantStrategy::Tensor => {
                    expect(&zp, Dtype::I8, &[1])?;
                    vec![zp.data[0] as i8]
                }
                QuantStrategy::Channel | QuantStrategy::Group => {
                    let ng = wq.num_groups(inn);
                    expect(&zp, Dtype::I32, &[packed_len(out, bits), ng])?;
                    unpack_cols(&i32_values(zp.data), out, ng, bits)
                }
            };
            check_range(&zp_name, &z, wq.num_groups(inn).max(1), wq)?;
            Some(z)
        };
        Ok(Self {
            out_features: out,
            in_features: inn,
            packed,
            scales,
            zero_points,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safetensors::write_model_dir_weights;

    /// Tiny deterministic generator (SplitMix64).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn int(&mut self, lo: i32, hi: i32) -> i32 {
            lo + (self.next() % (hi - lo + 1) as u64) as i32
        }
    }

    /// A random valid layer for `wq` with scales already rounded to `dtype`.
    fn random_layer(
        wq: &WeightQuant,
        out: usize,
        inn: usize,
        dtype: Dtype,
        seed: u64,
    ) -> QuantizedLinear {
        let mut rng = Rng(seed);
        let (lo, hi) = (wq.qmin(), wq.qmax());
        let n: usize = wq.scale_shape(out, inn).iter().product();
        let q = (0..out * inn).map(|_| rng.int(lo, hi) as i8).collect();
        let mut scales: Vec<f32> = (0..n).map(|_| rng.int(1, 1000) as f32 * 1.37e-5).collect();
        round_to_dtype(&mut scales, dtype);
        let zero_points = (!wq.symmetric).then(|| (0..n).map(|_| rng.int(lo, hi) as i8).collect());
        QuantizedLinear {
            out_features: out,
            in_features: inn,
            q,
            scales,
            zero_points,
        }
    }

    fn write_dir(tensors: &[TensorOut]) -> (tempfile::TempDir, ModelFiles) {
        let dir = tempfile::tempdir().unwrap();
        write_model_dir_weights(dir.path(), tensors, None).unwrap();
        let files = ModelFiles::open_dir(dir.path()).unwrap();
        (dir, files)
    }

    #[test]
    fn round_trips_through_files_for_all_schemes() {
        let mut schemes = vec![];
        for bits in 2..=8 {
            for sym in [true, false] {
                schemes.push(WeightQuant::group(bits, sym, 16));
                schemes.push(WeightQuant::channel(bits, sym));
                schemes.push(WeightQuant::tensor(bits, sym));
            }
        }
        // Ragged last group (40 = 16 + 16 + 8) and a group larger than the row.
        schemes.push(WeightQuant::group(4, false, 64));
        for (k, wq) in schemes.iter().enumerate() {
            for (dtype, out, inn) in [
                (Dtype::F32, 13, 40),
                (Dtype::BF16, 8, 32),
                (Dtype::F16, 1, 17),
            ] {
                let layer = random_layer(wq, out, inn, dtype, k as u64);
                let tensors = layer
                    .to_tensors("model.layers.0.mlp.up_proj", wq, dtype)
                    .unwrap();
                let (_dir, files) = write_dir(&tensors);
                assert!(super::super::is_packed_layer(
                    &files,
                    "model.layers.0.mlp.up_proj"
                ));
                assert!(!super::super::is_packed_layer(
                    &files,
                    "model.layers.0.mlp.down_proj"
                ));
                let back =
                    QuantizedLinear::from_files(&files, "model.layers.0.mlp.up_proj", wq).unwrap();
                assert_eq!(back, layer, "{wq:?} {dtype}");
                assert_eq!(back.dequantize(wq), layer.dequantize(wq));
            }
        }
    }

    #[test]
    fn tensor_names_dtypes_and_shapes() {
        let wq = WeightQuant::group(4, false, 32);
        let layer = random_layer(&wq, 13, 64, Dtype::BF16, 7);
        let t = layer.to_tensors("p", &wq, Dtype::BF16).unwrap();
        let got: Vec<(&str, Dtype, Vec<usize>)> = t
            .iter()
            .map(|t| (t.name.as_str(), t.dtype, t.shape.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("p.weight_packed", Dtype::I32, vec![13, 8]),
                ("p.weight_scale", Dtype::BF16, vec![13, 2]),
                ("p.weight_zero_point", Dtype::I32, vec![2, 2]),
                ("p.weight_shape", Dtype::I64, vec![2]),
            ]
        );
        let shape: Vec<u8> = [13i64, 64].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(t[3].data, shape);
        assert_eq!(t[0].data, i32_bytes(&pack_rows(&layer.q, 13, 64, 4)));
        // Symmetric: no zero point; tensor asymmetric: unpacked I8 [1]; int8 channel: 4 rows per word.
        let wq = WeightQuant::group(4, true, 32);
        let t = random_layer(&wq, 3, 64, Dtype::F32, 1)
            .to_tensors("p", &wq, Dtype::F32)
            .unwrap();
        assert_eq!(
            t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["p.weight_packed", "p.weight_scale", "p.weight_shape"]
        );
        let wq = WeightQuant::tensor(8, false);
        let l = random_layer(&wq, 3, 5, Dtype::F32, 2);
        let t = l.to_tensors("p", &wq, Dtype::F32).unwrap();
        assert_eq!(
            (t[1].shape.clone(), t[2].dtype, t[2].shape.clone()),
            (vec![1], Dtype::I8, vec![1])
        );
        assert_eq!(t[2].data, [l.zero_points.as_ref().unwrap()[0] as u8]);
        let wq = WeightQuant::channel(8, false);
        let t = random_layer(&wq, 9, 5, Dtype::F32, 3)
            .to_tensors("p", &wq, Dtype::F32)
            .unwrap();
        assert_eq!(
            (t[0].shape.clone(), t[1].shape.clone(), t[2].shape.clone()),
            (vec![9, 2], vec![9, 1], vec![3, 1])
        );
    }

    #[test]
    fn dequantize_by_hand() {
        // [2, 5] int4 asymmetric, groups of 2 (ragged: 2 + 2 + 1).
        let wq = WeightQuant::group(4, false, 2);
        let layer = QuantizedLinear {
            out_features: 2,
            in_features: 5,
            q: vec![-8, 7, 0, 1, 3, 2, -2, 5, -5, -1],
            scales: vec![0.5, 0.25, 2.0, 1.0, 0.125, 4.0],
            zero_points: Some(vec![1, -1, 0, 0, 2, -3]),
        };
        let w = layer.dequantize(&wq);
        assert_eq!(
            w,
            [-4.5, 3.0, 0.25, 0.5, 6.0, 2.0, -2.0, 0.375, -0.875, 8.0]
        );
        // Symmetric channel: ŵ = q·s.
        let wq = WeightQuant::channel(8, true);
        let layer = QuantizedLinear {
            out_features: 2,
            in_features: 2,
            q: vec![-128, 127, 3, -3],
            scales: vec![0.5, 0.1],
            zero_points: None,
        };
        assert_eq!(
            layer.dequantize(&wq),
            [-64.0, 63.5, 3.0 * 0.1f32, -3.0 * 0.1f32]
        );
    }

    #[test]
    fn to_tensors_rejects_bad_layers() {
        let wq = WeightQuant::group(4, false, 16);
        let good = random_layer(&wq, 4, 32, Dtype::F32, 5);
        let err = |l: &QuantizedLinear, wq: &WeightQuant, d: Dtype| {
            l.to_tensors("m.l", wq, d).unwrap_err().to_string()
        };
        let mut l = good.clone();
        l.q[5] = 8;
        let e = err(&l, &wq, Dtype::F32);
        assert!(
            e.contains("m.l.weight") && e.contains("value 8 at [0, 5]") && e.contains("[-8, 7]"),
            "{e}"
        );
        let mut l = good.clone();
        l.zero_points = None;
        assert!(err(&l, &wq, Dtype::F32).contains("m.l.weight_zero_point"));
        let mut l = good.clone();
        l.scales.pop();
        let e = err(&l, &wq, Dtype::F32);
        assert!(
            e.contains("m.l.weight_scale") && e.contains("[4, 2]"),
            "{e}"
        );
        let mut l = good.clone();
        l.scales[1] = f32::NAN;
        assert!(err(&l, &wq, Dtype::F32).contains("not finite"));
        let mut l = good.clone();
        l.scales[0] = 0.1;
        let e = err(&l, &wq, Dtype::BF16);
        assert!(
            e.contains("m.l.weight_scale") && e.contains("round_to_dtype"),
            "{e}"
        );
        assert!(err(&good, &wq, Dtype::I32).contains("F32, F16, BF16"));
        let e = err(&good, &WeightQuant::group(9, false, 16), Dtype::F32);
        assert!(e.contains("num_bits") && e.contains("got 9"), "{e}");
        let e = err(&good, &WeightQuant::group(4, false, 0), Dtype::F32);
        assert!(e.contains("group_size"), "{e}");
        let e = err(&good, &WeightQuant::group(4, true, 16), Dtype::F32);
        assert!(e.contains("symmetric but zero points"), "{e}");
    }

    /// Writes `good`'s tensors with tensor `name` replaced (or dropped when `None`).
    fn load_with(replace: &str, with: Option<TensorOut>, wq: &WeightQuant) -> String {
        let good = random_layer(wq, 4, 32, Dtype::F32, 9);
        let mut t = good.to_tensors("m.l", wq, Dtype::F32).unwrap();
        t.retain(|t| t.name != replace);
        t.extend(with);
        let (_dir, files) = write_dir(&t);
        QuantizedLinear::from_files(&files, "m.l", wq)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn from_files_rejects_wrong_tensors() {
        let wq = WeightQuant::group(4, false, 16);
        let name = "m.l.weight_packed";
        let e = load_with(
            name,
            Some(TensorOut::new(name, Dtype::I8, vec![4, 16], vec![0; 64]).unwrap()),
            &wq,
        );
        assert_eq!(e, "tensor `m.l.weight_packed`: dtype I8: expected I32");
        let e = load_with(
            name,
            Some(TensorOut::new(name, Dtype::I32, vec![4, 3], vec![0; 48]).unwrap()),
            &wq,
        );
        assert_eq!(
            e,
            "tensor `m.l.weight_packed`: expected shape [4, 4], got [4, 3]"
        );
        let e = load_with(
            name,
            Some(TensorOut::from_f32(name, vec![4, 4], &[0.0; 16], Dtype::F32).unwrap()),
            &wq,
        );
        assert!(e.contains("m.l.weight_packed") && e.contains("F32"), "{e}");
        let e = load_with(name, None, &wq);
        assert!(e.contains("missing tensor `m.l.weight_packed`"), "{e}");
        let e = load_with("m.l.weight_zero_point", None, &wq);
        assert!(e.contains("missing tensor `m.l.weight_zero_point`"), "{e}");
        let zp = "m.l.weight_zero_point";
        let e = load_with(
            zp,
            Some(TensorOut::new(zp, Dtype::I32, vec![4, 2], vec![0; 32]).unwrap()),
            &wq,
        );
        assert_eq!(
            e,
            "tensor `m.l.weight_zero_point`: expected shape [1, 2], got [4, 2]"
        );
        let sc = "m.l.weight_scale";
        let e = load_with(
            sc,
            Some(TensorOut::new(sc, Dtype::I32, vec![4, 2], vec![0; 32]).unwrap()),
            &wq,
        );
        assert!(e.contains("m.l.weight_scale") && e.contains("float"), "{e}");
        let e = load_with(
            sc,
            Some(TensorOut::from_f32(sc, vec![4, 1], &[1.0; 4], Dtype::F32).unwrap()),
            &wq,
        );
        assert!(e.contains("expected shape [4, 2], got [4, 1]"), "{e}");
        let sh = "m.l.weight_shape";
        let e = load_with(
            sh,
            Some(TensorOut::from_f32(sh, vec![2], &[4.0, 32.0], Dtype::F32).unwrap()),
            &wq,
        );
        assert!(e.contains("m.l.weight_shape") && e.contains("I64"), "{e}");
        let g =
            Some(TensorOut::new("m.l.weight_g_idx", Dtype::I32, vec![32], vec![0; 128]).unwrap());
        let e = load_with("none", g, &wq);
        assert!(
            e.contains("m.l.weight_g_idx") && e.contains("actorder"),
            "{e}"
        );
        // A symmetric scheme reading an asymmetric layer: the zero point is unexpected.
        let good = random_layer(&wq, 4, 32, Dtype::F32, 9);
        let (_dir, files) = write_dir(&good.to_tensors("m.l", &wq, Dtype::F32).unwrap());
        let e = QuantizedLinear::from_files(&files, "m.l", &WeightQuant::group(4, true, 16))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m.l.weight_zero_point") && e.contains("symmetric"),
            "{e}"
        );
        let e = QuantizedLinear::from_files(&files, "m.l", &WeightQuant::group(9, false, 16))
            .unwrap_err()
            .to_string();
        assert!(e.contains("got 9"), "{e}");
    }
}
