//! A reader of GGUF files (version 2 and 3): the metadata key/value pairs and
//! the tensor directory. The whole file is read into memory once; tensors are
//! views into it that [`crate::quant`] turns into `f32`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::LocalError;

const MAGIC: &[u8; 4] = b"GGUF";

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, when it is an integer >= 0.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }

    /// The value as a float (integers convert).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            Value::I32(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The storage type of a tensor (ggml's numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    BF16,
    /// A type this reader knows by number only (cannot be dequantised).
    Other(u32),
}

impl TensorType {
    fn from_u32(v: u32) -> TensorType {
        match v {
            0 => TensorType::F32,
            1 => TensorType::F16,
            2 => TensorType::Q4_0,
            3 => TensorType::Q4_1,
            6 => TensorType::Q5_0,
            7 => TensorType::Q5_1,
            8 => TensorType::Q8_0,
            10 => TensorType::Q2K,
            11 => TensorType::Q3K,
            12 => TensorType::Q4K,
            13 => TensorType::Q5K,
            14 => TensorType::Q6K,
            30 => TensorType::BF16,
            other => TensorType::Other(other),
        }
    }

    /// (elements per block, bytes per block), None for unknown types.
    pub fn block(self) -> Option<(usize, usize)> {
        Some(match self {
            TensorType::F32 => (1, 4),
            TensorType::F16 | TensorType::BF16 => (1, 2),
            TensorType::Q4_0 => (32, 18),
            TensorType::Q4_1 => (32, 20),
            TensorType::Q5_0 => (32, 22),
            TensorType::Q5_1 => (32, 24),
            TensorType::Q8_0 => (32, 34),
            TensorType::Q2K => (256, 84),
            TensorType::Q3K => (256, 110),
            TensorType::Q4K => (256, 144),
            TensorType::Q5K => (256, 176),
            TensorType::Q6K => (256, 210),
            TensorType::Other(_) => return None,
        })
    }
}

/// Where a tensor lives in the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous (innermost) dimension.
    pub dims: Vec<u64>,
    pub ty: TensorType,
    /// Byte offset from the start of the file.
    pub offset: usize,
    /// Bytes of the tensor's data.
    pub size: usize,
}

impl TensorInfo {
    pub fn elements(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }
}

/// A parsed GGUF file held in memory.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: BTreeMap<String, TensorInfo>,
    data: Vec<u8>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &str) -> LocalError {
        LocalError::Format {
            path: self.path.to_path_buf(),
            message: format!("{what} at byte {}", self.pos),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], LocalError> {
        if self
            .pos
            .checked_add(n)
            .is_none_or(|end| end > self.buf.len())
        {
            return Err(self.err(&format!("file ends early (wanted {n} more bytes)")));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, LocalError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, LocalError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, LocalError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, LocalError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn len(&mut self, what: &str) -> Result<usize, LocalError> {
        let n = self.u64()?;
        // Nothing in a GGUF file is longer than the file itself.
        if n > self.buf.len() as u64 {
            return Err(self.err(&format!("implausible {what} length {n}")));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String, LocalError> {
        let n = self.len("string")?;
        let b = self.take(n)?;
        // Some vocabularies hold invalid UTF-8 pieces; keep them lossily.
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<Value, LocalError> {
        Ok(match ty {
            0 => Value::U8(self.u8()?),
            1 => Value::I8(self.u8()? as i8),
            2 => Value::U16(self.u16()?),
            3 => Value::I16(self.u16()? as i16),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(self.u32()? as i32),
            6 => Value::F32(f32::from_bits(self.u32()?)),
            7 => Value::Bool(self.u8()? != 0),
            8 => Value::Str(self.string()?),
            9 => {
                if depth > 2 {
                    return Err(self.err("arrays nested too deeply"));
                }
                let inner = self.u32()?;
                let n = self.len("array")?;
                let mut v = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    v.push(self.value(inner, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(self.u64()? as i64),
            12 => Value::F64(f64::from_bits(self.u64()?)),
            other => return Err(self.err(&format!("unknown metadata value type {other}"))),
        })
    }
}

impl GgufFile {
    /// Reads and parses a GGUF file.
    pub fn open(path: &Path) -> Result<GgufFile, LocalError> {
        use std::io::Read;
        let io = |error| LocalError::Io {
            path: path.to_path_buf(),
            error,
        };
        // A regular file only (a FIFO or /dev/zero is refused before
        // anything blocks or streams), read into one buffer of its size.
        let mut r =
            moralsweep_userfs::open_bounded(path, moralsweep_userfs::MODEL_LIMIT).map_err(io)?;
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        r.read_to_end(&mut data).map_err(io)?;
        Self::parse(path, data)
    }

    /// Parses GGUF bytes (`path` only names them in errors).
    pub fn parse(path: &Path, data: Vec<u8>) -> Result<GgufFile, LocalError> {
        let mut c = Cursor {
            buf: &data,
            pos: 0,
            path,
        };
        if c.take(4).ok() != Some(MAGIC.as_slice()) {
            return Err(LocalError::Format {
                path: path.to_path_buf(),
                message: "not a GGUF file (the first four bytes are not \"GGUF\")".into(),
            });
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(c.err(&format!(
                "GGUF version {version} is not supported (expected 2 or 3)"
            )));
        }
        let n_tensors = c.len("tensor count")?;
        let n_kv = c.len("metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let v = c.value(ty, 0)?;
            metadata.insert(key, v);
        }
        let mut infos = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let nd = c.u32()?;
            if nd > 4 {
                return Err(c.err(&format!("tensor {name:?} has {nd} dimensions (at most 4)")));
            }
            let mut dims = Vec::with_capacity(nd as usize);
            for _ in 0..nd {
                dims.push(c.u64()?);
            }
            let ty = TensorType::from_u32(c.u32()?);
            let off = c.u64()?;
            infos.push((name, dims, ty, off));
        }
        let align = metadata
            .get("general.alignment")
            .and_then(Value::as_u64)
            .unwrap_or(32) as usize;
        if align == 0 {
            return Err(c.err("general.alignment is 0"));
        }
        let base = c.pos.div_ceil(align) * align;
        let mut tensors = BTreeMap::new();
        for (name, dims, ty, off) in infos {
            let elements: u64 = dims.iter().product();
            let size = match ty.block() {
                Some((be, bb)) => {
                    if dims.first().is_some_and(|d| d % be as u64 != 0) {
                        return Err(LocalError::Format {
                            path: path.to_path_buf(),
                            message: format!(
                                "tensor {name:?}: row length {} is not a multiple of the {ty:?} block size {be}",
                                dims[0]
                            ),
                        });
                    }
                    (elements / be as u64) as usize * bb
                }
                None => 0,
            };
            let offset = base + off as usize;
            if offset.checked_add(size).is_none_or(|e| e > data.len()) {
                return Err(LocalError::Format {
                    path: path.to_path_buf(),
                    message: format!(
                        "tensor {name:?} runs past the end of the file (truncated download?)"
                    ),
                });
            }
            tensors.insert(
                name.clone(),
                TensorInfo {
                    name,
                    dims,
                    ty,
                    offset,
                    size,
                },
            );
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            data,
        })
    }

    /// A metadata value, or an error naming the missing key.
    pub fn get(&self, key: &str) -> Result<&Value, LocalError> {
        self.metadata.get(key).ok_or_else(|| LocalError::Format {
            path: self.path.clone(),
            message: format!("metadata key {key:?} is missing"),
        })
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, LocalError> {
        let v = self.get(key)?;
        v.as_u64()
            .ok_or_else(|| self.bad(key, "an unsigned integer", v))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64, LocalError> {
        let v = self.get(key)?;
        v.as_f64().ok_or_else(|| self.bad(key, "a number", v))
    }

    pub fn get_str(&self, key: &str) -> Result<&str, LocalError> {
        let v = self.get(key)?;
        v.as_str().ok_or_else(|| self.bad(key, "a string", v))
    }

    fn bad(&self, key: &str, want: &str, got: &Value) -> LocalError {
        let mut shown = format!("{got:?}");
        shown.truncate(80);
        LocalError::Format {
            path: self.path.clone(),
            message: format!("metadata key {key:?} should be {want}, found {shown}"),
        }
    }

    /// A tensor's directory entry, or an error naming it.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, LocalError> {
        self.tensors.get(name).ok_or_else(|| LocalError::Format {
            path: self.path.clone(),
            message: format!("tensor {name:?} is missing"),
        })
    }

    /// The raw bytes of a tensor.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        &self.data[t.offset..t.offset + t.size]
    }
}
