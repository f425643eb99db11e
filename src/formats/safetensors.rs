//! safetensors files through the `safetensors` crate, which validates the header (offsets that
//! overlap, leave gaps or run past the end are refused). Each tensor keeps its raw little-endian
//! bytes and dtype; it is widened from f16/bf16 to f32 on demand, and written back in its dtype
//! (`RawTensor::from_f32_as`), exactly for values that came from it.

use std::collections::BTreeMap;

use safetensors::{tensor::TensorView, Dtype};

use super::FormatError;

/// Floating-point storage types SAE and model files use. Compute is always f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatDtype {
    F32,
    F16,
    BF16,
}

impl FloatDtype {
    pub fn name(self) -> &'static str {
        match self {
            FloatDtype::F32 => "float32",
            FloatDtype::F16 => "float16",
            FloatDtype::BF16 => "bfloat16",
        }
    }
    /// Bytes a value takes.
    pub fn bytes(self) -> usize {
        match self {
            FloatDtype::F32 => 4,
            FloatDtype::F16 | FloatDtype::BF16 => 2,
        }
    }
    fn to_safetensors(self) -> Dtype {
        match self {
            FloatDtype::F32 => Dtype::F32,
            FloatDtype::F16 => Dtype::F16,
            FloatDtype::BF16 => Dtype::BF16,
        }
    }
}

/// One tensor as stored: dtype, shape and the raw little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: FloatDtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl RawTensor {
    pub fn from_f32(shape: Vec<usize>, data: &[f32]) -> RawTensor {
        RawTensor { dtype: FloatDtype::F32, shape, bytes: bytemuck::cast_slice(data).to_vec() }
    }

    /// `data` stored as `dtype`, rounded to nearest (exact for values that came from that dtype).
    pub fn from_f32_as(dtype: FloatDtype, shape: Vec<usize>, data: &[f32]) -> RawTensor {
        let bytes = match dtype {
            FloatDtype::F32 => bytemuck::cast_slice(data).to_vec(),
            FloatDtype::F16 => data.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
            FloatDtype::BF16 => data.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
        };
        RawTensor { dtype, shape, bytes }
    }

    /// The values widened to f32, or a message naming tensor `name` and its first non-finite
    /// value (SAE and model weights must be finite to run).
    pub fn finite_f32(&self, name: &str) -> Result<Vec<f32>, String> {
        let values = self.to_f32();
        match values.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(format!("tensor '{name}' holds a non-finite value ({}) at flat index {i}", values[i])),
            None => Ok(values),
        }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values widened to f32.
    pub fn to_f32(&self) -> Vec<f32> {
        match self.dtype {
            FloatDtype::F32 => self.bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            FloatDtype::F16 => self.bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            FloatDtype::BF16 => self.bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        }
    }
}

/// The tensors of one safetensors file, by name, plus its `__metadata__` if any.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorFile {
    pub tensors: BTreeMap<String, RawTensor>,
    pub metadata: Option<std::collections::HashMap<String, String>>,
}

impl TensorFile {
    /// Parses a safetensors file. `name` is used in error messages. Tensors in dtypes other than
    /// f32/f16/bf16 are refused with their name.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<TensorFile, FormatError> {
        let table = TensorTable::parse(name, bytes, bytes.len() as u64)?;
        let tensors = table
            .tensors
            .into_iter()
            .map(|(tensor, e)| {
                let bytes = bytes[e.bytes.start as usize..e.bytes.end as usize].to_vec();
                (tensor, RawTensor { dtype: e.dtype, shape: e.shape, bytes })
            })
            .collect();
        Ok(TensorFile { tensors, metadata: table.metadata })
    }

    /// Serialises the tensors (sorted by name, as safetensors does) with the stored metadata.
    pub fn serialize(&self) -> Vec<u8> {
        let views: Vec<(String, TensorView<'_>)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let view = TensorView::new(t.dtype.to_safetensors(), t.shape.clone(), &t.bytes)
                    .expect("a RawTensor's bytes always match its shape and dtype");
                (name.clone(), view)
            })
            .collect();
        safetensors::serialize(views, self.metadata.clone()).expect("serialising in-memory tensors cannot fail")
    }
}

/// Where one tensor's values are in its file: dtype, shape and the byte range (from the file's
/// start), as its header says.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    pub dtype: FloatDtype,
    pub shape: Vec<usize>,
    pub bytes: std::ops::Range<u64>,
}

/// A safetensors file's header alone: every tensor's entry, checked against the file's length
/// before any tensor is read (what a GPU upload streams by, reading each tensor's bytes where
/// its entry says).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorTable {
    pub tensors: BTreeMap<String, TensorEntry>,
    pub metadata: Option<std::collections::HashMap<String, String>>,
}

/// The header's length field: a file's first 8 bytes.
pub const HEADER_LENGTH_BYTES: usize = 8;

impl TensorTable {
    /// How many bytes from the file's start the header takes, from its first 8 bytes (the
    /// length field and the JSON it counts), refused when over the crate's 100 MB limit.
    pub fn header_bytes(name: &str, first: &[u8]) -> Result<usize, FormatError> {
        let err = |msg: String| FormatError::Safetensors { file: name.to_string(), msg };
        let field: [u8; HEADER_LENGTH_BYTES] = first
            .get(..HEADER_LENGTH_BYTES)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| err(describe(&safetensors::SafeTensorError::HeaderTooSmall)))?;
        let n = u64::from_le_bytes(field);
        if n > 100_000_000 {
            return Err(err(describe(&safetensors::SafeTensorError::HeaderTooLarge)));
        }
        Ok(HEADER_LENGTH_BYTES + n as usize)
    }

    /// The header of a file of `file_len` bytes whose first bytes are `head` (at least
    /// `header_bytes` of them; more are ignored). Offsets that overlap, leave gaps or do not end
    /// where the file ends are refused, as are dtypes other than f32/f16/bf16.
    pub fn parse(name: &str, head: &[u8], file_len: u64) -> Result<TensorTable, FormatError> {
        use safetensors::SafeTensorError as E;
        let err = |msg: String| FormatError::Safetensors { file: name.to_string(), msg };
        let header_bytes = TensorTable::header_bytes(name, head)?;
        if header_bytes as u64 > file_len {
            return Err(err(describe(&E::InvalidHeaderLength)));
        }
        let json = head.get(HEADER_LENGTH_BYTES..header_bytes).ok_or_else(|| err(describe(&E::InvalidHeaderLength)))?;
        let json = std::str::from_utf8(json).map_err(|e| err(describe(&E::InvalidHeader(e))))?;
        // The crate's own header types: `Metadata::new` validates the offsets against the shapes
        // and dtypes, as `SafeTensors::read_metadata` does; the file's length is checked here.
        #[derive(serde::Deserialize)]
        struct Header {
            #[serde(rename = "__metadata__")]
            metadata: Option<std::collections::HashMap<String, String>>,
            #[serde(flatten)]
            tensors: std::collections::HashMap<String, safetensors::tensor::TensorInfo>,
        }
        let header: Header = serde_json::from_str(json).map_err(|e| err(describe(&E::InvalidHeaderDeserialization(e))))?;
        let mut infos: Vec<_> = header.tensors.into_iter().collect();
        infos.sort_by_key(|(_, info)| info.data_offsets);
        let meta = safetensors::tensor::Metadata::new(header.metadata, infos).map_err(|e| err(describe(&e)))?;
        if header_bytes as u64 + meta.data_len() as u64 != file_len {
            return Err(err(describe(&E::MetadataIncompleteBuffer)));
        }
        let start = header_bytes as u64;
        let mut tensors = BTreeMap::new();
        for (tensor_name, info) in meta.tensors() {
            let dtype = match info.dtype {
                Dtype::F32 => FloatDtype::F32,
                Dtype::F16 => FloatDtype::F16,
                Dtype::BF16 => FloatDtype::BF16,
                other => return Err(err(format!("tensor '{tensor_name}' has dtype {other:?}; only F32, F16 and BF16 are supported"))),
            };
            let (a, b) = info.data_offsets;
            tensors.insert(tensor_name, TensorEntry { dtype, shape: info.shape.clone(), bytes: start + a as u64..start + b as u64 });
        }
        Ok(TensorTable { tensors, metadata: meta.metadata().clone() })
    }
}

fn describe(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => "truncated: too short to hold a safetensors header".into(),
        E::InvalidHeaderLength => "header length runs past the end of the file (truncated or not safetensors)".into(),
        E::InvalidHeader(_) | E::InvalidHeaderStart | E::InvalidHeaderDeserialization(_) => {
            "header is not valid safetensors JSON (is this a safetensors file?)".into()
        }
        E::HeaderTooLarge => "header is larger than 100 MB".into(),
        E::MetadataIncompleteBuffer => "data section is shorter than the header says (truncated file)".into(),
        E::InvalidOffset(t) => format!("header gives tensor '{t}' offsets that overlap, leave gaps or run past the data"),
        E::TensorInvalidInfo => "a tensor's offsets do not match its shape and dtype".into(),
        E::ValidationOverflow => "a tensor's shape is too large".into(),
        other => other.to_string(),
    }
}
