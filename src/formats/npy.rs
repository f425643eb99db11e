//! NumPy `.npy` files (format versions 1.0–3.0): little-endian f32/f16/f64 in (widened to f32),
//! f32 out; 1-D and 2-D arrays in C order. Integer arrays (i32/i64) are read for token ids.
//!
//! The format is specified in `numpy/lib/format.py`: a magic string, a version, a header length,
//! then a Python-literal dict `{'descr': '<f4', 'fortran_order': False, 'shape': (n, d), }`.

use super::FormatError;

const MAGIC: &[u8] = b"\x93NUMPY";

/// A dense row-major matrix of f32 with its shape. 1-D arrays have `shape == [len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl NpyArray {
    /// Rows and columns, treating a 1-D array as a single row.
    pub fn as_matrix(&self) -> (usize, usize) {
        match self.shape.as_slice() {
            [n] => (1, *n),
            [n, d] => (*n, *d),
            _ => (0, 0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum NpyDtype {
    F16,
    F32,
    F64,
    I32,
    I64,
}

impl NpyDtype {
    fn size(self) -> usize {
        match self {
            NpyDtype::F16 => 2,
            NpyDtype::F32 | NpyDtype::I32 => 4,
            NpyDtype::F64 | NpyDtype::I64 => 8,
        }
    }
}

struct Header {
    dtype: NpyDtype,
    shape: Vec<usize>,
    data_offset: usize,
}

fn err(name: &str, msg: impl Into<String>) -> FormatError {
    FormatError::Npy { file: name.to_string(), msg: msg.into() }
}

fn parse_header(name: &str, bytes: &[u8]) -> Result<Header, FormatError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(err(name, "not a .npy file (missing the \\x93NUMPY magic)"));
    }
    let major = bytes[6];
    let (header_len, header_start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(err(name, "truncated header"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(err(name, format!("unsupported .npy format version {v}"))),
    };
    let header_end = header_start.checked_add(header_len).filter(|&e| e <= bytes.len()).ok_or_else(|| err(name, "truncated header"))?;
    let header = std::str::from_utf8(&bytes[header_start..header_end]).map_err(|_| err(name, "header is not text"))?;

    let descr = dict_value(header, "descr").ok_or_else(|| err(name, "header has no 'descr'"))?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let dtype = match descr {
        "<f4" | "=f4" => NpyDtype::F32,
        "<f2" | "=f2" => NpyDtype::F16,
        "<f8" | "=f8" => NpyDtype::F64,
        "<i4" | "=i4" => NpyDtype::I32,
        "<i8" | "=i8" => NpyDtype::I64,
        other if other.starts_with('>') => {
            return Err(err(name, format!("big-endian dtype '{other}' is not supported; save little-endian")))
        }
        other => return Err(err(name, format!("unsupported dtype '{other}' (expected <f4, <f2, <f8, <i4 or <i8)"))),
    };
    let fortran = dict_value(header, "fortran_order").ok_or_else(|| err(name, "header has no 'fortran_order'"))?;
    if fortran.trim() != "False" {
        return Err(err(name, "Fortran-order arrays are not supported; save with C order"));
    }
    let shape_text = dict_value(header, "shape").ok_or_else(|| err(name, "header has no 'shape'"))?;
    let shape_text = shape_text.trim().trim_start_matches('(').trim_end_matches(')');
    let mut shape = Vec::new();
    for part in shape_text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let dim: usize = part.parse().map_err(|_| err(name, format!("bad shape entry '{part}'")))?;
        shape.push(dim);
    }
    if shape.is_empty() || shape.len() > 2 {
        return Err(err(name, format!("array has {} dimensions; only 1-D and 2-D arrays are supported", shape.len())));
    }
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| err(name, "shape is too large"))?;
    let needed = count.checked_mul(dtype.size()).ok_or_else(|| err(name, "shape is too large"))?;
    let available = bytes.len() - header_end;
    if available < needed {
        return Err(err(name, format!("truncated: shape {shape:?} needs {needed} data bytes, file has {available}")));
    }
    if available > needed {
        return Err(err(name, format!("{} unexpected bytes after the data for shape {shape:?}", available - needed)));
    }
    Ok(Header { dtype, shape, data_offset: header_end })
}

/// The value text for `key` in a Python dict literal: up to the next top-level comma.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[start + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?;
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    Some(rest)
}

/// Reads a float array (f16/f32/f64), widening to f32. `name` is used in error messages.
pub fn read_f32(name: &str, bytes: &[u8]) -> Result<NpyArray, FormatError> {
    let h = parse_header(name, bytes)?;
    let raw = &bytes[h.data_offset..];
    let data: Vec<f32> = match h.dtype {
        NpyDtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        NpyDtype::F16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        NpyDtype::F64 => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")) as f32).collect(),
        NpyDtype::I32 | NpyDtype::I64 => return Err(err(name, "expected a float array (<f2, <f4 or <f8), found integers")),
    };
    Ok(NpyArray { shape: h.shape, data })
}

/// Reads a 1-D integer array (i32/i64), e.g. token ids.
pub fn read_i64(name: &str, bytes: &[u8]) -> Result<(Vec<usize>, Vec<i64>), FormatError> {
    let h = parse_header(name, bytes)?;
    let raw = &bytes[h.data_offset..];
    let data = match h.dtype {
        NpyDtype::I32 => raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
        NpyDtype::I64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8"))).collect(),
        _ => return Err(err(name, "expected an integer array (<i4 or <i8)")),
    };
    Ok((h.shape, data))
}

/// The float arrays of an `.npz` archive (`np.savez` / `np.savez_compressed`: one `KEY.npy` per
/// array), by key in the archive's order. An entry that is not `.npy` is refused.
pub fn read_npz(name: &str, bytes: &[u8]) -> Result<Vec<(String, NpyArray)>, FormatError> {
    let archive = super::zip::ZipArchive::parse(name, bytes)?;
    let mut arrays = Vec::new();
    for entry in archive.names() {
        let key = entry.strip_suffix(".npy").ok_or_else(|| err(name, format!("entry '{entry}' is not a .npy array")))?;
        let data = archive.read(entry)?.expect("a listed entry");
        arrays.push((key.to_string(), read_f32(&format!("{name}/{entry}"), &data)?));
    }
    Ok(arrays)
}

/// Writes an f32 array in `.npy` format 1.0 (C order, little-endian).
pub fn write_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "shape does not match data length");
    let shape_text = match shape {
        [n] => format!("({n},)"),
        dims => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so that the data starts on a 64-byte boundary, ending the header with '\n' (format.py).
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(bytemuck::cast_slice(data));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_2d() {
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let bytes = write_f32(&[3, 4], &data);
        assert_eq!((bytes.len() - data.len() * 4) % 64, 0);
        let back = read_f32("x.npy", &bytes).unwrap();
        assert_eq!(back.shape, vec![3, 4]);
        assert_eq!(back.data, data);
    }

    #[test]
    fn round_trip_1d() {
        let bytes = write_f32(&[5], &[1.0, 2.0, 3.0, 4.0, 5.0]);
        let back = read_f32("x.npy", &bytes).unwrap();
        assert_eq!(back.shape, vec![5]);
        assert_eq!(back.as_matrix(), (1, 5));
    }

    fn with_header(descr: &str, shape: &str, payload: &[u8]) -> Vec<u8> {
        let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn reads_npz_archives() {
        let a = write_f32(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let b = write_f32(&[3], &[0.5, -0.5, 9.0]);
        let npz = crate::formats::zip::write_stored(&[("w_enc.npy", &a), ("b_dec.npy", &b)]);
        let arrays = read_npz("params.npz", &npz).unwrap();
        assert_eq!(arrays[0].0, "w_enc");
        assert_eq!(arrays[0].1.data, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(arrays[1].1.shape, [3]);
        let bad = crate::formats::zip::write_stored(&[("notes.txt", b"hi")]);
        assert!(read_npz("params.npz", &bad).unwrap_err().to_string().contains("'notes.txt' is not a .npy array"));
        let broken = crate::formats::zip::write_stored(&[("w.npy", &a[..a.len() - 4])]);
        assert!(read_npz("params.npz", &broken).unwrap_err().to_string().contains("params.npz/w.npy: truncated"));
    }

    #[test]
    fn reads_f16_and_f64() {
        let f16s: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        let a = read_f32("a.npy", &with_header("<f2", "(2,)", &f16s)).unwrap();
        assert_eq!(a.data, vec![1.5, -2.0]);
        let f64s: Vec<u8> = [0.25f64, 3.0, 4.0, 5.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b = read_f32("b.npy", &with_header("<f8", "(2, 2)", &f64s)).unwrap();
        assert_eq!(b.shape, vec![2, 2]);
        assert_eq!(b.data, vec![0.25, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn reads_integer_tokens() {
        let ids: Vec<u8> = [3i64, 7, 50256].iter().flat_map(|v| v.to_le_bytes()).collect();
        let (shape, data) = read_i64("t.npy", &with_header("<i8", "(3,)", &ids)).unwrap();
        assert_eq!(shape, vec![3]);
        assert_eq!(data, vec![3, 7, 50256]);
    }

    fn message(r: Result<NpyArray, FormatError>) -> String {
        r.expect_err("should fail").to_string()
    }

    #[test]
    fn rejects_bad_input_with_clear_messages() {
        assert!(message(read_f32("g.npy", b"garbage bytes here")).contains("not a .npy"));
        assert!(message(read_f32("e.npy", b"")).contains("not a .npy"));
        let good = write_f32(&[2, 3], &[1.0; 6]);
        assert!(message(read_f32("t.npy", &good[..good.len() - 3])).contains("truncated"));
        assert!(message(read_f32("t.npy", &good[..20])).contains("truncated header"));
        let mut long = good.clone();
        long.extend_from_slice(&[0; 8]);
        assert!(message(read_f32("o.npy", &long)).contains("unexpected bytes"));
        assert!(message(read_f32("u.npy", &with_header("|u1", "(2,)", &[1, 2]))).contains("unsupported dtype"));
        assert!(message(read_f32("b.npy", &with_header(">f4", "(1,)", &[0; 4]))).contains("big-endian"));
        assert!(message(read_f32("c.npy", &with_header("<f4", "(1, 1, 1)", &[0; 4]))).contains("3 dimensions"));
        assert!(message(read_f32("s.npy", &with_header("<f4", "(a, 1)", &[0; 4]))).contains("bad shape"));
        assert!(message(read_f32("h.npy", &with_header("<f4", "(99999999999, 99999999999)", &[0; 4]))).contains("too large"));
        assert!(message(read_f32("i.npy", &with_header("<i4", "(1,)", &[0; 4]))).contains("found integers"));
        let mut fortran = good.clone();
        let pos = fortran.windows(5).position(|w| w == b"False").unwrap();
        fortran[pos..pos + 5].copy_from_slice(b"True ");
        assert!(message(read_f32("f.npy", &fortran)).contains("Fortran"));
    }
}
