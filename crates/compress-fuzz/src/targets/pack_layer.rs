//! `pack_layer`: a `model.safetensors` of pack-quantized layers (one per scheme kind) through
//! [`PackedLayerView::open`] and [`QuantizedLinear::from_files`], then dequantized: the
//! tensors' shapes, dtypes and the `weight_shape` the file claims.

use compress_format::pack_quantized::{PackedLayerView, QuantizedLinear};
use compress_format::safetensors::{ModelFiles, SINGLE_FILE};

use super::pack_quantized::{packed_layers_file, prefix, schemes};
use super::{Kind, Scratch, Target};

/// The packed-layer loader.
pub struct PackLayerTarget {
    scratch: Scratch,
}

impl PackLayerTarget {
    /// A target writing cases to `model.safetensors` in a scratch dir.
    pub fn new() -> Self {
        Self {
            scratch: Scratch::new(SINGLE_FILE),
        }
    }
}

impl Default for PackLayerTarget {
    fn default() -> Self {
        Self::new()
    }
}

impl Target for PackLayerTarget {
    fn name(&self) -> &'static str {
        "pack_layer"
    }

    fn kind(&self) -> Kind {
        Kind::Binary
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds = vec![packed_layers_file(None)];
        seeds.extend((0..schemes().len()).map(|i| packed_layers_file(Some(i))));
        seeds
    }

    fn run_one(&mut self, input: &[u8]) -> bool {
        self.scratch.write(input);
        let Ok(files) = ModelFiles::open_dir(self.scratch.dir.path()) else {
            return false;
        };
        let mut any = false;
        for (i, wq) in schemes().iter().enumerate() {
            let p = prefix(i);
            if PackedLayerView::open(&files, &p, wq).is_ok() {
                if let Ok(l) = QuantizedLinear::from_files(&files, &p, wq) {
                    any |= !l.dequantize(wq).is_empty();
                }
            }
        }
        any
    }
}
