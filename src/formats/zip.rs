//! ZIP archives, read only, as NumPy's `.npz` (`np.savez`: stored; `np.savez_compressed`:
//! deflated) and PyTorch's `torch.save` files (stored, 64-byte aligned, ZIP64 when large) write
//! them. The layout follows PKWARE's APPNOTE 6.3: the end-of-central-directory record (and its
//! ZIP64 form), the central directory, and each entry's local header before its data. Every offset
//! and size is checked against the file before it is used, every entry's CRC-32 is checked, and a
//! deflated entry is never inflated past the size its header declares.

use std::borrow::Cow;

use super::FormatError;

/// One file in the archive, where its bytes are.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    method: u16,
    crc32: u32,
    compressed: u64,
    uncompressed: u64,
    local_header: u64,
}

/// An archive over borrowed bytes; entries are read on demand.
#[derive(Debug)]
pub struct ZipArchive<'a> {
    file: String,
    bytes: &'a [u8],
    entries: Vec<Entry>,
}

const EOCD: u32 = 0x0605_4b50;
const ZIP64_EOCD: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;
const STORED: u16 = 0;
const DEFLATED: u16 = 8;

/// Little-endian reads at checked offsets.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn slice(&self, at: u64, len: u64) -> Option<&'a [u8]> {
        let start = usize::try_from(at).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.bytes.get(start..end)
    }
    fn u16(&self, at: u64) -> Option<u16> {
        self.slice(at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, at: u64) -> Option<u32> {
        self.slice(at, 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&self, at: u64) -> Option<u64> {
        self.slice(at, 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
}

impl<'a> ZipArchive<'a> {
    /// Reads the central directory of `bytes`; `file` names the archive in errors.
    pub fn parse(file: &str, bytes: &'a [u8]) -> Result<ZipArchive<'a>, FormatError> {
        let err = |msg: &str| FormatError::Archive { file: file.to_string(), msg: msg.to_string() };
        let r = Reader { bytes };
        let len = bytes.len() as u64;
        // The end record is the last 22 bytes plus a comment of at most 65,535.
        let lowest = len.saturating_sub(22 + 65_535);
        let eocd = (lowest..=len.saturating_sub(22))
            .rev()
            .find(|&at| r.u32(at) == Some(EOCD))
            .ok_or_else(|| err("not a ZIP archive (no end-of-central-directory record)"))?;
        let mut count = u64::from(r.u16(eocd + 10).ok_or_else(|| err("truncated end record"))?);
        let mut dir_size = u64::from(r.u32(eocd + 12).ok_or_else(|| err("truncated end record"))?);
        let mut dir_at = u64::from(r.u32(eocd + 16).ok_or_else(|| err("truncated end record"))?);
        if count == 0xFFFF || dir_size == 0xFFFF_FFFF || dir_at == 0xFFFF_FFFF {
            let locator = eocd.checked_sub(20).filter(|&at| r.u32(at) == Some(ZIP64_LOCATOR));
            let record = locator.and_then(|at| r.u64(at + 8)).ok_or_else(|| err("a ZIP64 archive without its ZIP64 end locator"))?;
            if r.u32(record) != Some(ZIP64_EOCD) {
                return Err(err("the ZIP64 end locator points at no ZIP64 end record"));
            }
            count = r.u64(record + 32).ok_or_else(|| err("truncated ZIP64 end record"))?;
            dir_size = r.u64(record + 40).ok_or_else(|| err("truncated ZIP64 end record"))?;
            dir_at = r.u64(record + 48).ok_or_else(|| err("truncated ZIP64 end record"))?;
        }
        if r.slice(dir_at, dir_size).is_none() {
            return Err(err("the central directory lies outside the file (truncated?)"));
        }
        // Each central entry is at least 46 bytes: a count the directory cannot hold is a lie.
        if count > dir_size / 46 {
            return Err(err(&format!("the end record declares {count} entries, more than its central directory holds")));
        }
        let mut entries = Vec::with_capacity(count as usize);
        let mut at = dir_at;
        for _ in 0..count {
            let bad = || err("a central directory entry is truncated or malformed");
            if r.u32(at) != Some(CENTRAL) {
                return Err(bad());
            }
            let method = r.u16(at + 10).ok_or_else(bad)?;
            let crc32 = r.u32(at + 16).ok_or_else(bad)?;
            let mut compressed = u64::from(r.u32(at + 20).ok_or_else(bad)?);
            let mut uncompressed = u64::from(r.u32(at + 24).ok_or_else(bad)?);
            let name_len = u64::from(r.u16(at + 28).ok_or_else(bad)?);
            let extra_len = u64::from(r.u16(at + 30).ok_or_else(bad)?);
            let comment_len = u64::from(r.u16(at + 32).ok_or_else(bad)?);
            let mut local_header = u64::from(r.u32(at + 42).ok_or_else(bad)?);
            let name = r.slice(at + 46, name_len).ok_or_else(bad)?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| err("an entry's name is not UTF-8"))?;
            // ZIP64 extended information: the 64-bit values of the fields set to 0xFFFFFFFF, in order.
            let extra = r.slice(at + 46 + name_len, extra_len).ok_or_else(bad)?;
            let mut field = 0usize;
            while field + 4 <= extra.len() {
                let id = u16::from_le_bytes([extra[field], extra[field + 1]]);
                let size = usize::from(u16::from_le_bytes([extra[field + 2], extra[field + 3]]));
                let body = extra.get(field + 4..field + 4 + size).ok_or_else(bad)?;
                if id == 0x0001 {
                    let mut values = body.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
                    for slot in [&mut uncompressed, &mut compressed, &mut local_header] {
                        if *slot == 0xFFFF_FFFF {
                            *slot = values.next().ok_or_else(|| err("a ZIP64 extra field is missing a value"))?;
                        }
                    }
                }
                field += 4 + size;
            }
            entries.push(Entry { name, method, crc32, compressed, uncompressed, local_header });
            at += 46 + name_len + extra_len + comment_len;
        }
        Ok(ZipArchive { file: file.to_string(), bytes, entries })
    }

    /// The entries' names, in the central directory's order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// The bytes of entry `name` (borrowed when stored, inflated when deflated), or `None` when the
    /// archive has no such entry.
    pub fn read(&self, name: &str) -> Result<Option<Cow<'a, [u8]>>, FormatError> {
        let Some(e) = self.entries.iter().find(|e| e.name == name) else {
            return Ok(None);
        };
        let err = |msg: String| FormatError::Archive { file: format!("{}/{}", self.file, e.name), msg };
        let r = Reader { bytes: self.bytes };
        if r.u32(e.local_header) != Some(LOCAL) {
            return Err(err("its local header is missing (truncated or not where the directory says)".into()));
        }
        let name_len = u64::from(r.u16(e.local_header + 26).ok_or_else(|| err("truncated local header".into()))?);
        let extra_len = u64::from(r.u16(e.local_header + 28).ok_or_else(|| err("truncated local header".into()))?);
        let data_at = e.local_header + 30 + name_len + extra_len;
        let data = r.slice(data_at, e.compressed).ok_or_else(|| err(format!("its {} bytes run past the end of the file", e.compressed)))?;
        let bytes: Cow<'a, [u8]> = match e.method {
            STORED if e.compressed == e.uncompressed => Cow::Borrowed(data),
            STORED => return Err(err("a stored entry whose two sizes differ".into())),
            DEFLATED => {
                let limit = usize::try_from(e.uncompressed).map_err(|_| err("too large".into()))?;
                let out = miniz_oxide::inflate::decompress_to_vec_with_limit(data, limit)
                    .map_err(|_| err(format!("not valid deflate data of at most {limit} bytes")))?;
                if out.len() != limit {
                    return Err(err(format!("inflates to {} bytes, not the {limit} its header declares", out.len())));
                }
                Cow::Owned(out)
            }
            other => return Err(err(format!("compression method {other} is not supported (only stored and deflate)"))),
        };
        if crc32(&bytes) != e.crc32 {
            return Err(err("its CRC-32 does not match (the file is damaged)".into()));
        }
        Ok(Some(bytes))
    }
}

/// CRC-32 (IEEE 802.3, reflected, as ZIP uses it).
pub fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *slot = c;
        }
        t
    });
    !bytes.iter().fold(!0u32, |c, &b| table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8))
}

/// A stored (uncompressed) archive of `files`, for tests and fixtures.
pub fn write_stored(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let offset = out.len() as u32;
        let (crc, len, name_len) = (crc32(data), data.len() as u32, name.len() as u16);
        let header = |sig: u32, central: bool| {
            let mut h = sig.to_le_bytes().to_vec();
            if central {
                h.extend(20u16.to_le_bytes()); // made by
            }
            h.extend(20u16.to_le_bytes()); // version needed
            h.extend([0u8; 4]); // flags, method (stored)
            h.extend([0u8; 4]); // time, date
            h.extend(crc.to_le_bytes());
            h.extend(len.to_le_bytes());
            h.extend(len.to_le_bytes());
            h.extend(name_len.to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central {
                h.extend([0u8; 10]); // comment length, disk, internal and external attributes
                h.extend(offset.to_le_bytes());
            }
            h.extend(name.as_bytes());
            h
        };
        out.extend(header(LOCAL, false));
        out.extend_from_slice(data);
        central.extend(header(CENTRAL, true));
    }
    let (dir_at, dir_size, n) = (out.len() as u32, central.len() as u32, files.len() as u16);
    out.extend(central);
    out.extend(EOCD.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend(n.to_le_bytes());
    out.extend(n.to_le_bytes());
    out.extend(dir_size.to_le_bytes());
    out.extend(dir_at.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_of_the_check_string() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn reads_what_it_writes_and_refuses_damage() {
        let zip = write_stored(&[("a.npy", b"hello"), ("dir/b", b"")]);
        let archive = ZipArchive::parse("t.zip", &zip).unwrap();
        assert_eq!(archive.names().collect::<Vec<_>>(), ["a.npy", "dir/b"]);
        assert_eq!(archive.read("a.npy").unwrap().unwrap().as_ref(), b"hello");
        assert_eq!(archive.read("dir/b").unwrap().unwrap().as_ref(), b"");
        assert!(archive.read("c").unwrap().is_none());

        let msg = |bytes: &[u8]| match ZipArchive::parse("t.zip", bytes) {
            Err(e) => e.to_string(),
            Ok(a) => a.read("a.npy").unwrap_err().to_string(),
        };
        assert!(msg(b"").contains("not a ZIP archive"));
        assert!(msg(&zip[..zip.len() - 1]).contains("not a ZIP archive"));
        let mut flipped = zip.clone();
        flipped[30 + 5] ^= 1; // a byte of a.npy's data
        assert!(msg(&flipped).contains("CRC-32 does not match"), "{}", msg(&flipped));
        let mut lying = zip.clone();
        let eocd = zip.len() - 22;
        lying[eocd + 10..eocd + 12].copy_from_slice(&5000u16.to_le_bytes());
        assert!(msg(&lying).contains("declares 5000 entries"), "{}", msg(&lying));
        let mut outside = zip.clone();
        outside[eocd + 16..eocd + 20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(msg(&outside).contains("ZIP64"), "{}", msg(&outside));
        let mut outside = zip.clone();
        outside[eocd + 16..eocd + 20].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert!(msg(&outside).contains("outside the file"), "{}", msg(&outside));
    }
}
