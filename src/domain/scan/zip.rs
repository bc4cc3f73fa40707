//! A ZIP reader with budgets, for PyTorch's archives (`torch.save` since 1.6).
//!
//! It reads the end-of-central-directory record (and its ZIP64 form), the
//! central directory, and the local header and bytes of each pickle member; it
//! never decompresses anything, so a ZIP bomb has nothing to expand. PyTorch
//! writes every member stored (uncompressed); a compressed or encrypted pickle
//! member is refused rather than inflated. Readers disagree about ambiguous
//! archives (data before the first member, a directory that does not end where
//! the end record says, two members of one name), and a file one reader sees as
//! harmless another may load differently, so every ambiguity is a refusal.

use super::{
    FileFormat, FileVerdict, Mode, Need, Refusal, ScanLimits, Src, Stream, Walked, stream,
};

const EOCD: u64 = 0x0605_4b50;
const EOCD64: u64 = 0x0606_4b50;
const EOCD64_LOCATOR: u64 = 0x0706_4b50;
const CENTRAL: u64 = 0x0201_4b50;
const LOCAL: u64 = 0x0403_4b50;
/// The longest member name accepted.
const MAX_NAME: usize = 4096;

fn u16_at(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn u32_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

struct Member {
    name: String,
    method: u64,
    flags: u64,
    compressed: u64,
    uncompressed: u64,
    local: u64,
}

/// Where the central directory is, from the end records.
struct Directory {
    offset: u64,
    size: u64,
    entries: u64,
    /// Where the directory must end: the first end record.
    end: u64,
}

type Refused = (Option<String>, Refusal);

fn archive(reason: impl Into<String>) -> Refused {
    (
        None,
        Refusal::Archive {
            reason: reason.into(),
        },
    )
}

pub(super) fn scan_archive(
    path: &str,
    src: &Src<'_>,
    limits: &ScanLimits,
) -> Result<FileVerdict, Need> {
    let (format, refused) = match members(src, limits)? {
        Err(r) => (FileFormat::TorchZip, Some(r)),
        Ok(members) => pickles(src, limits, &members)?,
    };
    let (member, refused) = match refused {
        Some((m, r)) => (m, Some(r)),
        None => (None, None),
    };
    Ok(FileVerdict {
        path: path.into(),
        format,
        refused,
        member,
    })
}

/// Scans every pickle member; the format is [`FileFormat::Zip`] when there is
/// none.
fn pickles(
    src: &Src<'_>,
    limits: &ScanLimits,
    members: &[Member],
) -> Result<(FileFormat, Option<Refused>), Need> {
    let pkl: Vec<&Member> = members
        .iter()
        .filter(|m| m.name.ends_with(".pkl"))
        .collect();
    if pkl.is_empty() {
        return Ok((FileFormat::Zip, None));
    }
    let mut read = 0u64;
    for m in pkl {
        let refuse = |r: Refusal| Ok((FileFormat::TorchZip, Some((Some(m.name.clone()), r))));
        if m.flags & 1 != 0 {
            return refuse(Refusal::Archive {
                reason: "the pickle member is encrypted".into(),
            });
        }
        if m.method != 0 || m.compressed != m.uncompressed {
            return refuse(Refusal::Archive {
                reason: format!(
                    "the pickle member is compressed (method {}); PyTorch stores its members",
                    m.method
                ),
            });
        }
        read = read.saturating_add(m.compressed);
        if read > limits.max_pickle_bytes {
            return refuse(Refusal::Budget {
                what: "bytes of pickle data".into(),
                limit: limits.max_pickle_bytes,
            });
        }
        let header = src.get(m.local, 30)?;
        if header.len() < 30 || u32_at(header, 0) != LOCAL {
            return refuse(Refusal::Archive {
                reason: "no local header where the directory says".into(),
            });
        }
        let (n, e) = (u16_at(header, 26), u16_at(header, 28));
        let name = src.get(m.local + 30, n)?;
        if name != m.name.as_bytes() {
            return refuse(Refusal::Archive {
                reason: "the local header names another member".into(),
            });
        }
        let start = m.local + 30 + n + e;
        let Some(end) = start
            .checked_add(m.compressed)
            .filter(|&end| end <= src.len)
        else {
            return refuse(Refusal::Archive {
                reason: "the member runs past the end of the file".into(),
            });
        };
        let data = src.get(start, end - start)?;
        match stream(data, 0, end - start, Mode::Strict, limits) {
            Walked::Done(Stream::Pickle(None)) => {}
            Walked::Done(Stream::Pickle(Some(r)) | Stream::NotPickle(r)) => return refuse(r),
            // Unreachable: the member is read whole. Refuse rather than loop.
            Walked::NeedMore => {
                return refuse(Refusal::Truncated {
                    offset: end - start,
                });
            }
        }
    }
    Ok((FileFormat::TorchZip, None))
}

/// The archive's members, checked: names safe and unique, one record prefix,
/// no TorchScript.
fn members(src: &Src<'_>, limits: &ScanLimits) -> Result<Result<Vec<Member>, Refused>, Need> {
    let dir = match directory(src)? {
        Ok(d) => d,
        Err(r) => return Ok(Err(r)),
    };
    if dir.entries > limits.max_zip_members {
        return Ok(Err((
            None,
            Refusal::Budget {
                what: "ZIP members".into(),
                limit: limits.max_zip_members,
            },
        )));
    }
    if dir.size > limits.max_zip_directory_bytes {
        return Ok(Err((
            None,
            Refusal::Budget {
                what: "bytes of ZIP central directory".into(),
                limit: limits.max_zip_directory_bytes,
            },
        )));
    }
    if dir.offset.checked_add(dir.size) != Some(dir.end) {
        return Ok(Err(archive(
            "the central directory does not end where the end record begins",
        )));
    }
    let bytes = src.get(dir.offset, dir.size)?;
    Ok(parse_directory(bytes, &dir))
}

fn parse_directory(b: &[u8], dir: &Directory) -> Result<Vec<Member>, Refused> {
    let mut members = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut prefix: Option<String> = None;
    let mut at = 0usize;
    while at < b.len() {
        if b.len() - at < 46 || u32_at(b, at) != CENTRAL {
            return Err(archive(format!(
                "a malformed central directory entry at byte {}",
                dir.offset + at as u64
            )));
        }
        let flags = u16_at(b, at + 8);
        let method = u16_at(b, at + 10);
        let mut compressed = u32_at(b, at + 20);
        let mut uncompressed = u32_at(b, at + 24);
        let n = u16_at(b, at + 28) as usize;
        let e = u16_at(b, at + 30) as usize;
        let c = u16_at(b, at + 32) as usize;
        let disk = u16_at(b, at + 34);
        let mut local = u32_at(b, at + 42);
        let body = at + 46;
        if b.len() - body < n + e + c {
            return Err(archive("a central directory entry runs past the directory"));
        }
        let raw = &b[body..body + n];
        let extra = &b[body + n..body + n + e];
        // ZIP64: the fields that overflowed, in this order.
        let mut x = 0;
        while x + 4 <= extra.len() {
            let id = u16_at(extra, x);
            let len = u16_at(extra, x + 2) as usize;
            let data = &extra[(x + 4).min(extra.len())..(x + 4 + len).min(extra.len())];
            if id == 1 {
                let mut f = 0;
                for field in [&mut uncompressed, &mut compressed, &mut local] {
                    if *field == 0xFFFF_FFFF {
                        if f + 8 > data.len() {
                            return Err(archive("a ZIP64 field is missing from its extra block"));
                        }
                        *field = u64_at(data, f);
                        f += 8;
                    }
                }
            }
            x += 4 + len;
        }
        if disk != 0 && disk != 0xFFFF {
            return Err(archive("a member on another disk"));
        }
        let name = member_name(raw).map_err(archive)?;
        if !names.insert(name.clone()) {
            return Err(archive(format!("two members are named {name:?}")));
        }
        let top = name.split('/').next().unwrap_or_default().to_owned();
        match &prefix {
            None => prefix = Some(top.clone()),
            Some(p) if *p != top => {
                return Err(archive(format!(
                    "members under two top-level folders ({p:?} and {top:?})"
                )));
            }
            Some(_) => {}
        }
        let rest = name.split_once('/').map_or("", |(_, r)| r);
        if rest == "constants.pkl" || rest.starts_with("code/") {
            return Err(archive(
                "a TorchScript archive (torch.jit): its code runs when it is loaded",
            ));
        }
        if local >= dir.offset {
            return Err(archive(format!(
                "member {name:?} starts inside the central directory"
            )));
        }
        members.push(Member {
            name,
            method,
            flags,
            compressed,
            uncompressed,
            local,
        });
        at = body + n + e + c;
    }
    if members.len() as u64 != dir.entries {
        return Err(archive(format!(
            "the end record counts {} members, the directory has {}",
            dir.entries,
            members.len()
        )));
    }
    Ok(members)
}

/// A member name is UTF-8, relative, without `..`, `.`, empty segments,
/// backslashes, NUL or control characters.
fn member_name(raw: &[u8]) -> Result<String, String> {
    if raw.is_empty() || raw.len() > MAX_NAME {
        return Err(format!(
            "a member name of {} bytes (1 to {MAX_NAME} accepted)",
            raw.len()
        ));
    }
    let Ok(name) = std::str::from_utf8(raw) else {
        return Err("a member name is not UTF-8".into());
    };
    let hostile = name.starts_with('/')
        || name.chars().any(|c| c == '\\' || c.is_control())
        || name
            .trim_end_matches('/')
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if hostile {
        return Err(format!("hostile member name {name:?}"));
    }
    Ok(name.to_owned())
}

/// Finds the end record: at exactly its comment's length from the end of the
/// file, as writers put it; a ZIP64 one through its locator.
fn directory(src: &Src<'_>) -> Result<Result<Directory, Refused>, Need> {
    let len = src.len;
    if len < 22 {
        return Ok(Err(archive("shorter than an end record")));
    }
    let tail_len = len.min(22 + 0xFFFF);
    let tail = src.get(len - tail_len, tail_len)?;
    let base = len - tail_len;
    let mut found = None;
    for at in (0..=tail.len() - 22).rev() {
        if u32_at(tail, at) == EOCD && (at + 22) as u64 + u16_at(tail, at + 20) == tail_len {
            found = Some(at);
            break;
        }
    }
    let Some(at) = found else {
        return Ok(Err(archive("no end of central directory record")));
    };
    let r = &tail[at..at + 22];
    let eocd = base + at as u64;
    if u16_at(r, 4) != 0 || u16_at(r, 6) != 0 {
        return Ok(Err(archive("a multi-disk archive")));
    }
    let (entries, size, offset) = (u16_at(r, 10), u32_at(r, 12), u32_at(r, 16));
    if entries != 0xFFFF && size != 0xFFFF_FFFF && offset != 0xFFFF_FFFF {
        return Ok(Ok(Directory {
            offset,
            size,
            entries,
            end: eocd,
        }));
    }
    // ZIP64: a locator just before the end record points at the ZIP64 record.
    if eocd < 20 {
        return Ok(Err(archive("a ZIP64 archive without its locator")));
    }
    let loc = src.get(eocd - 20, 20)?;
    if u32_at(loc, 0) != EOCD64_LOCATOR {
        return Ok(Err(archive("a ZIP64 archive without its locator")));
    }
    let at64 = u64_at(loc, 8);
    if at64 > eocd - 20 || eocd - 20 - at64 < 56 {
        return Ok(Err(archive("the ZIP64 locator points outside the file")));
    }
    let r = src.get(at64, 56)?;
    if u32_at(r, 0) != EOCD64 {
        return Ok(Err(archive("no ZIP64 end record where the locator points")));
    }
    if u32_at(r, 16) != 0 || u32_at(r, 20) != 0 {
        return Ok(Err(archive("a multi-disk archive")));
    }
    Ok(Ok(Directory {
        entries: u64_at(r, 32),
        size: u64_at(r, 40),
        offset: u64_at(r, 48),
        end: at64,
    }))
}
