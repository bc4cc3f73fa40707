//! The tensor extents of a safetensors file, within budgets.
//!
//! Layout: `u64` little-endian header length `n`, `n` bytes of JSON (an
//! object: `"__metadata__"` → string map, every other key a tensor name →
//! `{"dtype", "shape", "data_offsets": [begin, end]}` with offsets relative to
//! the data region `[8 + n, len)`), then the data.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::{MAX_HEADER, MAX_TENSORS};

/// The extents `(begin, end)` of the tensors of the safetensors file open as
/// `file` (of length `len`, with `header_len` read from its first 8 bytes), in
/// absolute file offsets, sorted and non-overlapping; `None` if the header is
/// not a safetensors header within budget. Errors only when reading fails.
pub(super) fn tensor_extents<R: Read + Seek>(
    file: &mut R,
    header_len: u64,
    len: u64,
) -> io::Result<Option<Vec<(u64, u64)>>> {
    // A header is at least `{}`; it and its length prefix lie inside the file.
    if !(2..=MAX_HEADER).contains(&header_len) || header_len > len.saturating_sub(8) {
        return Ok(None);
    }
    let mut header = vec![0u8; header_len as usize];
    file.seek(SeekFrom::Start(8))?;
    file.read_exact(&mut header)?;
    if header[0] != b'{' {
        return Ok(None);
    }
    let Ok(Header(mut tensors)) = serde_json::from_slice::<Header>(&header) else {
        return Ok(None);
    };
    let data_start = 8 + header_len;
    let data_len = len - data_start;
    tensors.sort_unstable();
    let mut at = 0;
    for t in &mut tensors {
        let (begin, end) = *t;
        if begin > end || end > data_len || begin < at {
            return Ok(None);
        }
        at = end;
        *t = (data_start + begin, data_start + end);
    }
    Ok(Some(tensors))
}

/// The `data_offsets` of every tensor of a header, unchecked.
struct Header(Vec<(u64, u64)>);

impl<'de> serde::Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(HeaderVisitor)
    }
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a safetensors header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let mut tensors = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "__metadata__" {
                // A map of strings, as the format says: anything else (deep
                // nesting included) is not a safetensors header.
                map.next_value::<std::collections::HashMap<String, String>>()?;
                continue;
            }
            if tensors.len() == MAX_TENSORS {
                return Err(de::Error::custom("too many tensors"));
            }
            let info: TensorInfo = map.next_value()?;
            tensors.push((info.data_offsets[0], info.data_offsets[1]));
        }
        Ok(Header(tensors))
    }
}

/// A tensor entry; `dtype` and `shape` are not needed to cut it, and other
/// fields are ignored.
#[derive(serde::Deserialize)]
struct TensorInfo {
    data_offsets: [u64; 2],
}
