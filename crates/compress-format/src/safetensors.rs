//! The safetensors format: memory-mapped reading with header validation.
//!
//! A `.safetensors` file is
//!
//! ```text
//! [u64 little-endian N][N bytes of UTF-8 JSON header][data section]
//! ```
//!
//! The header maps each tensor name to `{"dtype": "F32", "shape": [..],
//! "data_offsets": [begin, end]}` (offsets relative to the data section) plus
//! an optional `"__metadata__"` string-to-string map. Tensors are row-major,
//! little-endian, and must tile the data section exactly.
//!
//! [`SafetensorsFile::open`] maps the file and checks the header itself first
//! (so errors name the file and the tensor), then runs the `safetensors`
//! crate's own validation. A model directory holds either `model.safetensors`
//! or shards listed in `model.safetensors.index.json`; see [`ModelFiles`].
//! Writers live in [`write_safetensors`] and [`write_model_dir_weights`].

mod model_files;
mod write;

pub(crate) use write::encode_f32;

pub use model_files::{ModelFiles, INDEX_FILE, SINGLE_FILE};
pub use write::{write_model_dir_weights, write_safetensors, TensorOut};

use crate::error::{FormatError, Result};
use memmap2::Mmap;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Largest header accepted, as in the `safetensors` crate.
pub const MAX_HEADER_BYTES: usize = 100_000_000;

/// Element types this toolkit reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// 64-bit float.
    F64,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Boolean (one byte).
    Bool,
}

impl Dtype {
    /// All dtypes.
    pub const ALL: [Dtype; 10] = [
        Self::F32,
        Self::F16,
        Self::BF16,
        Self::F64,
        Self::I8,
        Self::U8,
        Self::I16,
        Self::I32,
        Self::I64,
        Self::Bool,
    ];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// Name as written in safetensors headers (`"F32"`, `"BF16"`, `"BOOL"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::F64 => "F64",
            Self::I8 => "I8",
            Self::U8 => "U8",
            Self::I16 => "I16",
            Self::I32 => "I32",
            Self::I64 => "I64",
            Self::Bool => "BOOL",
        }
    }

    /// Parses a header dtype name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(name))
    }

    /// HF's name of a float dtype in config.json (`torch_dtype`): `float16`, `bfloat16`, else
    /// `float32`.
    pub fn torch_name(self) -> &'static str {
        match self {
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
            _ => "float32",
        }
    }

    /// Whether this is a floating-point dtype.
    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::BF16 | Self::F64)
    }

    /// The matching `safetensors` crate dtype.
    pub fn to_safetensors(self) -> ::safetensors::Dtype {
        use ::safetensors::Dtype as S;
        match self {
            Self::F32 => S::F32,
            Self::F16 => S::F16,
            Self::BF16 => S::BF16,
            Self::F64 => S::F64,
            Self::I8 => S::I8,
            Self::U8 => S::U8,
            Self::I16 => S::I16,
            Self::I32 => S::I32,
            Self::I64 => S::I64,
            Self::Bool => S::BOOL,
        }
    }

    /// Converts a `safetensors` crate dtype; `None` for dtypes not supported here (U16, F8, ...).
    pub fn from_safetensors(d: ::safetensors::Dtype) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.to_safetensors() == d)
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Dtype> for ::safetensors::Dtype {
    fn from(d: Dtype) -> Self {
        d.to_safetensors()
    }
}

impl TryFrom<::safetensors::Dtype> for Dtype {
    type Error = ::safetensors::Dtype;

    /// Fails (returning the input) for dtypes this crate does not support.
    fn try_from(d: ::safetensors::Dtype) -> std::result::Result<Self, Self::Error> {
        Self::from_safetensors(d).ok_or(d)
    }
}

/// A borrowed view of one tensor inside a mapped file.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    /// Tensor name.
    pub name: &'a str,
    /// Element type.
    pub dtype: Dtype,
    /// Shape (row-major).
    pub shape: &'a [usize],
    /// Raw little-endian bytes (not necessarily aligned).
    pub data: &'a [u8],
}

impl TensorRef<'_> {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Decodes F32/F16/BF16/F64 data to `f32` (F64 is rounded); other dtypes give a Dtype error.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        decode_f32(self.name, self.dtype, self.data)
    }
}

/// Decodes little-endian float bytes of `dtype` to `f32`.
pub(crate) fn decode_f32(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>> {
    let out = match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b) as f32
            })
            .collect(),
        other => {
            return Err(FormatError::Dtype {
                name: name.to_string(),
                dtype: other.name().to_string(),
                msg: "cannot convert to f32 (expected F32, F16, BF16 or F64)".into(),
            })
        }
    };
    Ok(out)
}

/// Header entry of one tensor: raw dtype, shape and absolute byte range in the file.
#[derive(Clone, Debug)]
struct Entry {
    dtype: ::safetensors::Dtype,
    shape: Vec<usize>,
    range: Range<usize>,
}

/// Shape of a header entry as it appears in the JSON.
#[derive(serde::Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

/// One memory-mapped, validated `.safetensors` file.
pub struct SafetensorsFile {
    path: PathBuf,
    mmap: Mmap,
    tensors: BTreeMap<String, Entry>,
    metadata: Option<HashMap<String, String>>,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .field("bytes", &self.mmap.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl SafetensorsFile {
    /// Maps and validates the file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| FormatError::io(path, e))?;
        let len = file.metadata().map_err(|e| FormatError::io(path, e))?.len();
        if len < 8 {
            return Err(FormatError::safetensors(
                path,
                format!("file is {len} bytes, too short for the 8-byte header length"),
            ));
        }
        // SAFETY: the map is read-only and lives as long as `self`. Mutating or
        // truncating the file while it is mapped is undefined behaviour; like
        // every safetensors loader we accept that model files are not modified
        // underneath a running process (our own writers replace files by
        // rename, which leaves existing maps intact).
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
        let (tensors, metadata) = parse_header(path, &mmap)?;
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            mmap,
            tensors,
            metadata,
        })
    }

    /// Lets the OS drop this file's pages from the process's resident set; touched again,
    /// they are read back from disk. Streaming readers call it after each layer so the
    /// checkpoint does not accumulate in memory.
    pub fn release_pages(&self) {
        #[cfg(unix)]
        // SAFETY: the map is a shared read-only file mapping, so dropped pages refault with
        // the file's (unchanged) contents; nothing is zeroed or lost.
        unsafe {
            let _ = self
                .mmap
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed);
        }
    }

    /// Path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.tensors.keys().map(String::as_str).collect()
    }

    /// Whether the file holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the file holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Borrowed view of tensor `name` (MissingTensor / Dtype errors name the file).
    pub fn tensor(&self, name: &str) -> Result<TensorRef<'_>> {
        let (key, entry) =
            self.tensors
                .get_key_value(name)
                .ok_or_else(|| FormatError::MissingTensor {
                    path: self.path.clone(),
                    name: name.to_string(),
                })?;
        let dtype = Dtype::from_safetensors(entry.dtype).ok_or_else(|| FormatError::Dtype {
            name: name.to_string(),
            dtype: entry.dtype.to_string(),
            msg: format!("unsupported dtype in {}", self.path.display()),
        })?;
        Ok(TensorRef {
            name: key,
            dtype,
            shape: &entry.shape,
            data: &self.mmap[entry.range.clone()],
        })
    }

    /// The `__metadata__` map, if the header has one.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.metadata.as_ref()
    }
}

type Header = (BTreeMap<String, Entry>, Option<HashMap<String, String>>);

/// Validates the header of `buf` (the whole file) with messages naming `path` and tensors.
fn parse_header(path: &Path, buf: &[u8]) -> Result<Header> {
    let bad = |msg: String| FormatError::safetensors(path, msg);
    let mut n_bytes = [0u8; 8];
    n_bytes.copy_from_slice(&buf[..8]);
    let n = u64::from_le_bytes(n_bytes);
    if n > MAX_HEADER_BYTES as u64 {
        return Err(bad(format!(
            "header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit (not a safetensors file?)"
        )));
    }
    let n = n as usize;
    if 8 + n > buf.len() {
        return Err(bad(format!(
            "header length {n} points past the end of the file ({} bytes; truncated?)",
            buf.len()
        )));
    }
    let header = std::str::from_utf8(&buf[8..8 + n])
        .map_err(|e| bad(format!("header is not valid UTF-8: {e}")))?;
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_str(header)
        .map_err(|e| bad(format!("header is not a valid JSON object: {e}")))?;
    let data_start = 8 + n;
    let data_len = buf.len() - data_start;

    let mut tensors = BTreeMap::new();
    let mut metadata = None;
    for (name, value) in json {
        if name == "__metadata__" {
            let m = serde_json::from_value(value)
                .map_err(|e| bad(format!("`__metadata__` is not a string-to-string map: {e}")))?;
            metadata = Some(m);
            continue;
        }
        let raw: RawEntry = serde_json::from_value(value)
            .map_err(|e| bad(format!("tensor `{name}`: malformed header entry: {e}")))?;
        let dtype: ::safetensors::Dtype =
            serde_json::from_value(serde_json::Value::String(raw.dtype.clone()))
                .map_err(|_| bad(format!("tensor `{name}`: unknown dtype `{}`", raw.dtype)))?;
        let (begin, end) = raw.data_offsets;
        if begin > end || end > data_len {
            return Err(bad(format!(
                "tensor `{name}`: data_offsets [{begin}, {end}] lie outside the {data_len}-byte data section"
            )));
        }
        let bits = raw
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|numel| numel.checked_mul(dtype.bitsize()))
            .ok_or_else(|| bad(format!("tensor `{name}`: shape {:?} overflows", raw.shape)))?;
        if bits % 8 != 0 || bits / 8 != end - begin {
            return Err(bad(format!(
                "tensor `{name}`: dtype {dtype} with shape {:?} needs {} bytes but data_offsets [{begin}, {end}] span {}",
                raw.shape,
                bits.div_ceil(8),
                end - begin
            )));
        }
        let range = data_start + begin..data_start + end;
        tensors.insert(
            name,
            Entry {
                dtype,
                shape: raw.shape,
                range,
            },
        );
    }

    let mut by_start: Vec<(&String, &Entry)> = tensors.iter().collect();
    by_start.sort_by_key(|(_, e)| (e.range.start, e.range.end));
    for pair in by_start.windows(2) {
        let ((a, ea), (b, eb)) = (pair[0], pair[1]);
        if ea.range.end > eb.range.start {
            return Err(bad(format!("tensors `{a}` and `{b}` overlap")));
        }
    }

    // Final authority: the reference implementation (contiguity, full coverage, ...).
    ::safetensors::SafeTensors::read_metadata(buf).map_err(|e| bad(e.to_string()))?;
    Ok((tensors, metadata))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds a raw safetensors file from a header JSON string and a data section.
    pub(crate) fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    }

    fn open_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<SafetensorsFile>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.safetensors");
        std::fs::write(&p, bytes).unwrap();
        let r = SafetensorsFile::open(&p);
        (dir, r)
    }

    fn open_err(bytes: &[u8]) -> String {
        let (_dir, r) = open_bytes(bytes);
        let err = r.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, FormatError::Safetensors { .. }), "{err:?}");
        assert!(msg.contains("bad.safetensors"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        msg
    }

    #[test]
    fn reads_valid_raw_file_and_metadata() {
        let header = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut data = Vec::new();
        data.extend_from_slice(&1.5f32.to_le_bytes());
        data.extend_from_slice(&(-2.0f32).to_le_bytes());
        data.extend_from_slice(&half::f16::from_f32(0.5).to_bits().to_le_bytes());
        data.extend_from_slice(&half::f16::from_f32(3.0).to_bits().to_le_bytes());
        let (_dir, f) = open_bytes(&raw_file(header, &data));
        let f = f.unwrap();
        assert_eq!(f.names(), vec!["a", "b"]);
        assert_eq!(f.metadata().unwrap()["format"], "pt");
        let a = f.tensor("a").unwrap();
        assert_eq!(
            (a.dtype, a.shape, a.numel()),
            (Dtype::F32, &[2usize][..], 2)
        );
        assert_eq!(a.to_f32().unwrap(), vec![1.5, -2.0]);
        assert_eq!(f.tensor("b").unwrap().to_f32().unwrap(), vec![0.5, 3.0]);
        let err = f.tensor("c").unwrap_err();
        assert!(matches!(&err, FormatError::MissingTensor { name, .. } if name == "c"));
        assert!(err.to_string().contains("bad.safetensors"));
    }

    #[test]
    fn truncated_and_garbage_files_error() {
        assert!(open_err(b"").contains("too short"));
        assert!(open_err(&[1, 0, 0]).contains("too short"));
        // Header length far beyond the file.
        let msg = open_err(&[0xff; 8]);
        assert!(msg.contains("exceeds"), "{msg}");
        // Header length plausible but past the end of the file.
        let mut b = 64u64.to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        assert!(open_err(&b).contains("past the end"));
        // Not JSON.
        assert!(open_err(&raw_file("{nope", b"")).contains("JSON"));
        // Valid file cut short: header now claims bytes that are gone.
        let header = r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        let full = raw_file(header, &[0u8; 16]);
        let msg = open_err(&full[..full.len() - 5]);
        assert!(msg.contains("`w`") && msg.contains("outside"), "{msg}");
    }

    #[test]
    fn inconsistent_offsets_error_naming_tensor() {
        let too_far = r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,32]}}"#;
        let msg = open_err(&raw_file(too_far, &[0u8; 16]));
        assert!(msg.contains("`w`"), "{msg}");
        let wrong_size = r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#;
        let msg = open_err(&raw_file(wrong_size, &[0u8; 16]));
        assert!(
            msg.contains("`w`") && msg.contains("needs 12 bytes"),
            "{msg}"
        );
        let overlap = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
        let msg = open_err(&raw_file(overlap, &[0u8; 12]));
        assert!(msg.contains("overlap"), "{msg}");
        let bad_dtype = r#"{"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#;
        assert!(open_err(&raw_file(bad_dtype, &[0u8; 4])).contains("unknown dtype `F33`"));
        let no_shape = r#"{"w":{"dtype":"F32","data_offsets":[0,4]}}"#;
        assert!(open_err(&raw_file(no_shape, &[0u8; 4])).contains("`w`"));
        // Gap / trailing bytes are caught by the reference validation.
        let gap = r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        open_err(&raw_file(gap, &[0u8; 8]));
    }

    #[test]
    fn unsupported_dtype_errors_on_access() {
        let header = r#"{"w":{"dtype":"U16","shape":[2],"data_offsets":[0,4]}}"#;
        let (_dir, f) = open_bytes(&raw_file(header, &[0u8; 4]));
        let f = f.unwrap();
        assert_eq!(f.names(), vec!["w"]);
        let err = f.tensor("w").unwrap_err();
        assert!(
            matches!(&err, FormatError::Dtype { name, dtype, .. } if name == "w" && dtype == "U16")
        );
    }

    #[test]
    fn dtype_names_sizes_and_conversions() {
        for d in Dtype::ALL {
            assert_eq!(Dtype::from_name(d.name()), Some(d));
            assert_eq!(Dtype::try_from(::safetensors::Dtype::from(d)), Ok(d));
            assert_eq!(d.size() * 8, d.to_safetensors().bitsize());
        }
        assert_eq!(Dtype::from_safetensors(::safetensors::Dtype::U32), None);
        assert!(Dtype::BF16.is_float() && !Dtype::I8.is_float());
        let t = TensorRef {
            name: "ids",
            dtype: Dtype::I32,
            shape: &[1],
            data: &[0, 0, 0, 0],
        };
        let err = t.to_f32().unwrap_err();
        assert!(matches!(&err, FormatError::Dtype { name, .. } if name == "ids"));
    }

    proptest! {
        #[test]
        fn decode_matches_half(bits in any::<u16>(), x in any::<f64>()) {
            let b = bits.to_le_bytes();
            let f = decode_f32("t", Dtype::BF16, &b).unwrap()[0];
            prop_assert_eq!(f.to_bits(), half::bf16::from_bits(bits).to_f32().to_bits());
            let f = decode_f32("t", Dtype::F16, &b).unwrap()[0];
            prop_assert_eq!(f.to_bits(), half::f16::from_bits(bits).to_f32().to_bits());
            let f = decode_f32("t", Dtype::F64, &x.to_le_bytes()).unwrap()[0];
            prop_assert_eq!(f.to_bits(), (x as f32).to_bits());
        }
    }
}
