//! GGUF metadata values: the 13 value types, their encoding and a bounds-checked decoder.

/// The type tag of a metadata value (the `u32` before it in the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `u8` (0).
    U8,
    /// `i8` (1).
    I8,
    /// `u16` (2).
    U16,
    /// `i16` (3).
    I16,
    /// `u32` (4).
    U32,
    /// `i32` (5).
    I32,
    /// `f32` (6).
    F32,
    /// `bool`, one byte 0/1 (7).
    Bool,
    /// `u64 len` + UTF-8 bytes (8).
    String,
    /// `u32 type; u64 count; elements` (9).
    Array,
    /// `u64` (10).
    U64,
    /// `i64` (11).
    I64,
    /// `f64` (12).
    F64,
}

const ALL_TYPES: [ValueType; 13] = [
    ValueType::U8,
    ValueType::I8,
    ValueType::U16,
    ValueType::I16,
    ValueType::U32,
    ValueType::I32,
    ValueType::F32,
    ValueType::Bool,
    ValueType::String,
    ValueType::Array,
    ValueType::U64,
    ValueType::I64,
    ValueType::F64,
];

impl ValueType {
    /// The tag stored in the file.
    pub fn id(self) -> u32 {
        ALL_TYPES.iter().position(|&t| t == self).unwrap_or(0) as u32
    }

    /// Parses a tag.
    pub fn from_id(id: u32) -> Option<Self> {
        ALL_TYPES.get(id as usize).copied()
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `f32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// Homogeneous array: element type and elements (each of that type; no nested arrays).
    Array(ValueType, Vec<Value>),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f64`.
    F64(f64),
}

impl Value {
    /// The value's type tag.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// An array of strings.
    pub fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::Array(
            ValueType::String,
            items.into_iter().map(|s| Value::String(s.into())).collect(),
        )
    }

    /// An array of `i32`.
    pub fn i32s(items: impl IntoIterator<Item = i32>) -> Value {
        Value::Array(ValueType::I32, items.into_iter().map(Value::I32).collect())
    }

    /// An array of `f32`.
    pub fn f32s(items: impl IntoIterator<Item = f32>) -> Value {
        Value::Array(ValueType::F32, items.into_iter().map(Value::F32).collect())
    }

    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is `f32` or `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a float, if it is a number of any type (integers converted).
    pub fn as_number(&self) -> Option<f64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v as f64),
            _ => self.as_f64().or_else(|| self.as_u64().map(|v| v as f64)),
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a bool, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if the value is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, items) => Some(items),
            _ => None,
        }
    }

    /// Appends the encoded value (without its type tag) to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::U8(v) => out.push(*v),
            Value::I8(v) => out.extend(v.to_le_bytes()),
            Value::U16(v) => out.extend(v.to_le_bytes()),
            Value::I16(v) => out.extend(v.to_le_bytes()),
            Value::U32(v) => out.extend(v.to_le_bytes()),
            Value::I32(v) => out.extend(v.to_le_bytes()),
            Value::F32(v) => out.extend(v.to_le_bytes()),
            Value::Bool(v) => out.push(u8::from(*v)),
            Value::String(s) => encode_str(s, out),
            Value::Array(ty, items) => {
                out.extend(ty.id().to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|v| v.encode(out));
            }
            Value::U64(v) => out.extend(v.to_le_bytes()),
            Value::I64(v) => out.extend(v.to_le_bytes()),
            Value::F64(v) => out.extend(v.to_le_bytes()),
        }
    }

    /// Checks that an array's elements all have its element type and that it does not nest.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Value::Array(ty, items) = self {
            if *ty == ValueType::Array {
                return Err("nested arrays are not supported".into());
            }
            if let Some(v) = items.iter().find(|v| v.value_type() != *ty) {
                return Err(format!(
                    "array of {ty:?} holds a {:?} element",
                    v.value_type()
                ));
            }
        }
        Ok(())
    }
}

/// Appends a GGUF string (`u64` length + bytes).
pub(crate) fn encode_str(s: &str, out: &mut Vec<u8>) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// A bounds-checked little-endian reader over a byte slice; errors say what was being read.
pub(crate) struct Cursor<'a> {
    /// The whole buffer.
    pub buf: &'a [u8],
    /// Read position.
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "truncated at byte {} while reading {what} ({n} bytes needed, {} left)",
                    self.pos,
                    self.buf.len() - self.pos.min(self.buf.len())
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    /// Reads a `u32`.
    pub fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    /// Reads a `u64`.
    pub fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Reads a `u64` count and checks that `count * min_size` bytes can still follow.
    pub fn count(&mut self, min_size: usize, what: &str) -> Result<usize, String> {
        let n = self.u64(what)?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_size as u64) > left {
            return Err(format!(
                "{what} = {n} at byte {} is larger than the file allows",
                self.pos - 8
            ));
        }
        Ok(n as usize)
    }

    /// Reads a GGUF string.
    pub fn string(&mut self, what: &str) -> Result<String, String> {
        let n = self.count(1, what)?;
        let at = self.pos;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| format!("{what} at byte {at} is not valid UTF-8"))
    }

    /// Reads a value of type `ty`.
    pub fn value(&mut self, ty: ValueType, what: &str) -> Result<Value, String> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(what)?[0]),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(self.u32(what)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::Bool => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("{what}: bool byte {b} is neither 0 nor 1")),
            },
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => {
                let tag = self.u32(what)?;
                let ety = ValueType::from_id(tag)
                    .ok_or_else(|| format!("{what}: unknown array element type {tag}"))?;
                if ety == ValueType::Array {
                    return Err(format!("{what}: nested arrays are not supported"));
                }
                let n = self.count(1, what)?;
                let items = (0..n)
                    .map(|_| self.value(ety, what))
                    .collect::<Result<Vec<_>, _>>()?;
                Value::Array(ety, items)
            }
            ValueType::U64 => Value::U64(self.u64(what)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips() {
        let values = vec![
            Value::U8(7),
            Value::I8(-3),
            Value::U16(65535),
            Value::I16(-300),
            Value::U32(1 << 31),
            Value::I32(-5),
            Value::F32(1.5e-5),
            Value::Bool(true),
            Value::String("héllo Ġthe".into()),
            Value::strings(["a b", "", "Ġ t"]),
            Value::i32s([1, 3, 6]),
            Value::U64(u64::MAX),
            Value::I64(i64::MIN),
            Value::F64(10000.0),
        ];
        for v in values {
            v.check().unwrap();
            let mut buf = Vec::new();
            v.encode(&mut buf);
            let mut c = Cursor { buf: &buf, pos: 0 };
            assert_eq!(c.value(v.value_type(), "v").unwrap(), v);
            assert_eq!(c.pos, buf.len());
            assert_eq!(
                ValueType::from_id(v.value_type().id()),
                Some(v.value_type())
            );
        }
    }

    #[test]
    fn truncated_and_oversized_inputs_are_errors() {
        let mut buf = Vec::new();
        Value::String("abcdef".into()).encode(&mut buf);
        let mut c = Cursor {
            buf: &buf[..buf.len() - 1],
            pos: 0,
        };
        assert!(c
            .value(ValueType::String, "key")
            .unwrap_err()
            .contains("key"));
        let huge = u64::MAX.to_le_bytes();
        let mut c = Cursor { buf: &huge, pos: 0 };
        let e = c.string("name").unwrap_err();
        assert!(e.contains("larger than the file allows"), "{e}");
        assert!(Value::Array(ValueType::U32, vec![Value::I32(1)])
            .check()
            .is_err());
    }
}
