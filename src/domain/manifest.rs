//! Manifests: the files of one artifact, and the safe relative paths they live at.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Sha256};
use crate::error::{Error, Result};

/// A safe, relative, `/`-separated path of a file inside an artifact.
///
/// Rules (a hostile manifest cannot name a file outside the directory it is
/// fetched into):
/// - 1 to 4096 bytes, each segment 1 to 255 bytes;
/// - relative: does not start with `/`, and no segment is `.` or `..`;
/// - no empty segments (`a//b`, trailing `/`);
/// - no NUL, no backslash, no control characters;
/// - no segment with a drive-letter colon such as `C:` (meaningful on Windows).
///
/// ```
/// use modelreg::RelPath;
/// assert!(RelPath::new("weights/model.safetensors").is_ok());
/// assert!(RelPath::new("tokenizer.json").is_ok());
///
/// for bad in ["", "/etc/passwd", "../x", "a/../../b", "a//b", "a/", "./a", "a\\b", "a\0b", "C:/x"] {
///     assert!(RelPath::new(bad).is_err(), "{bad:?} accepted");
/// }
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelPath(String);

impl RelPath {
    /// Checks `path` against the rules above.
    pub fn new(path: impl Into<String>) -> Result<Self> {
        let path = path.into();
        let bad = |reason: &str| Error::invalid_path(path.clone(), reason);
        if path.is_empty() {
            return Err(bad("is empty"));
        }
        if path.len() > 4096 {
            return Err(bad("is longer than 4096 bytes"));
        }
        if path.starts_with('/') {
            return Err(bad("is absolute; artifact paths are relative"));
        }
        if path.contains('\0') {
            return Err(bad("contains NUL"));
        }
        if path.contains('\\') {
            return Err(bad("contains a backslash; use '/' to separate directories"));
        }
        if path.chars().any(char::is_control) {
            return Err(bad("contains a control character"));
        }
        for segment in path.split('/') {
            match segment {
                "" => return Err(bad("has an empty segment")),
                "." | ".." => return Err(bad("has a '.' or '..' segment")),
                s if s.len() > 255 => return Err(bad("has a segment longer than 255 bytes")),
                s if s.len() >= 2 && s.as_bytes()[1] == b':' => {
                    return Err(bad("has a drive-letter segment"));
                }
                _ => {}
            }
        }
        Ok(RelPath(path))
    }

    /// The path as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl TryFrom<String> for RelPath {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        RelPath::new(s)
    }
}

impl From<RelPath> for String {
    fn from(p: RelPath) -> String {
        p.0
    }
}

/// One file of an artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Where the file lives inside the artifact.
    pub path: RelPath,
    /// Its size in bytes.
    pub size: u64,
    /// The BLAKE3 digest of its bytes: the key of its blob.
    pub digest: Digest,
    /// The SHA-256 of the same bytes, for formats that name files by it (see
    /// [`Sha256`]). Every registration records it, hashed in the same read as
    /// `digest`; `None` in versions registered before it was (0.1, early 0.2),
    /// whose readers compute it themselves if they need it. A plain fetch or
    /// verify re-hashes with BLAKE3 only; a fetch under a trust policy
    /// ([`FetchOptions::trust`](crate::FetchOptions::trust)) also checks it,
    /// since signatures cover it. A manifest alone does not prove it: it is as
    /// trustworthy as the registry that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256>,
}

/// The files of one artifact: entries sorted by path.
///
/// Invariants:
/// - entries are sorted by path (byte order) and paths are unique;
/// - no two paths differ only in letter case (they would collide on case-insensitive
///   filesystems);
/// - no path is both a file and a directory (`a` and `a/b`);
/// - at most [`Manifest::MAX_ENTRIES`] entries.
///
/// Its canonical bytes ([`to_bytes`](Self::to_bytes)) are compact JSON
/// `{"format":1,"files":[{"path":…,"size":…,"digest":"blake3:…","sha256":"…"},…]}`,
/// with `sha256` omitted where an entry has none; their digest
/// ([`digest`](Self::digest)) identifies the artifact. Decoding accepts only canonical
/// bytes, so one artifact has exactly one identity.
///
/// ```
/// use modelreg::{Digest, Manifest, ManifestEntry, RelPath, Sha256};
/// let entry = |p: &str| ManifestEntry {
///     path: RelPath::new(p).unwrap(),
///     size: 1,
///     digest: Digest::of(p.as_bytes()),
///     sha256: Some(Sha256::of(p.as_bytes())),
/// };
/// let m = Manifest::new(vec![entry("b.bin"), entry("a.json")]).unwrap();
/// assert_eq!(m.entries()[0].path.as_str(), "a.json"); // sorted
/// assert_eq!(Manifest::from_bytes(&m.to_bytes()).unwrap(), m);
///
/// assert!(Manifest::new(vec![entry("a"), entry("a")]).is_err());       // duplicate
/// assert!(Manifest::new(vec![entry("Model.bin"), entry("model.bin")]).is_err()); // case collision
/// assert!(Manifest::new(vec![entry("a"), entry("a/b")]).is_err());     // file and directory
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<ManifestEntry>,
}

impl Serialize for Manifest {
    /// The canonical shape, `{"format":1,"files":[…]}`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Ref<'a> {
            format: u32,
            files: &'a [ManifestEntry],
        }
        Ref {
            format: MANIFEST_FORMAT,
            files: &self.entries,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Manifest {
    /// Accepts the canonical shape and re-checks every invariant (entries may come
    /// in any order; they are sorted).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Owned {
            format: u32,
            files: Vec<ManifestEntry>,
        }
        let o = Owned::deserialize(d)?;
        if o.format != MANIFEST_FORMAT {
            return Err(serde::de::Error::custom(format!(
                "manifest format {} is not supported (this build reads {MANIFEST_FORMAT})",
                o.format
            )));
        }
        Manifest::new(o.files).map_err(serde::de::Error::custom)
    }
}

/// The manifest format version written by this build.
pub const MANIFEST_FORMAT: u32 = 1;

/// The decoding side: paths arrive as plain strings and are checked afterwards, so
/// a hostile path is reported as [`Error::InvalidPath`] rather than as a decoding
/// failure.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestWire {
    // Already checked by the first, lenient decoding pass.
    #[serde(rename = "format")]
    _format: u32,
    files: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    path: String,
    size: u64,
    digest: Digest,
    // Absent in manifests written before it was recorded. An explicit `null`
    // decodes too, and is then rejected as not canonical.
    #[serde(default)]
    sha256: Option<Sha256>,
}

impl Manifest {
    /// The most files one artifact may have.
    pub const MAX_ENTRIES: usize = 1_000_000;

    /// Sorts `entries` and checks the invariants.
    pub fn new(mut entries: Vec<ManifestEntry>) -> Result<Self> {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Self::check(&entries)?;
        Ok(Manifest { entries })
    }

    fn check(entries: &[ManifestEntry]) -> Result<()> {
        let mut total = 0u64;
        for (i, e) in entries.iter().enumerate() {
            if i > 0 && entries[i - 1].path > e.path {
                return Err(Error::invalid_path(
                    e.path.as_str(),
                    "entries are not sorted",
                ));
            }
            total = total
                .checked_add(e.size)
                .ok_or_else(|| Error::invalid_input("manifest", "total size overflows"))?;
        }
        Self::check_paths(&entries.iter().map(|e| &e.path).collect::<Vec<_>>())
    }

    /// Checks that `sorted` (paths in ascending order) could be the paths of one
    /// manifest: at most [`MAX_ENTRIES`](Self::MAX_ENTRIES), no duplicates, no two
    /// differing only in letter case, no path that is both a file and a directory.
    ///
    /// [`new`](Self::new) checks this too; ingest calls it before any byte moves.
    pub(crate) fn check_paths(sorted: &[&RelPath]) -> Result<()> {
        if sorted.len() > Self::MAX_ENTRIES {
            return Err(Error::invalid_input(
                "manifest",
                format!("more than {} files", Self::MAX_ENTRIES),
            ));
        }
        let mut folded = HashSet::with_capacity(sorted.len());
        for (i, path) in sorted.iter().enumerate() {
            if i > 0 && sorted[i - 1] == *path {
                return Err(Error::invalid_path(path.as_str(), "appears twice"));
            }
            if !folded.insert(path.as_str().to_lowercase()) {
                return Err(Error::invalid_path(
                    path.as_str(),
                    "differs from another path only in letter case",
                ));
            }
        }
        // A path that is a file cannot also be a directory. Check every proper
        // prefix of every path against the set of (case-folded) file paths.
        for path in sorted {
            let p = path.as_str();
            for (i, _) in p.match_indices('/') {
                if folded.contains(&p[..i].to_lowercase()) {
                    return Err(Error::invalid_path(
                        p,
                        format!("'{}' is a file, so it cannot be a directory", &p[..i]),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The entries, sorted by path.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// The number of files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the artifact has no files.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sum of all file sizes.
    pub fn total_size(&self) -> u64 {
        // Cannot overflow: checked on construction.
        self.entries.iter().map(|e| e.size).sum()
    }

    /// The entry at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&ManifestEntry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The canonical bytes (see the type's documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Invariant: plain structs of strings and integers always serialize into
        // memory. Empty bytes here would name every artifact by the digest of "".
        serde_json::to_vec(self).expect("a manifest always serializes to JSON")
    }

    /// The digest of the canonical bytes: the artifact's identity.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.to_bytes())
    }

    /// Decodes canonical manifest bytes, checking the format version, every path
    /// and every invariant.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        let record = "manifest";
        let v: Version = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(record, format!("not a manifest: {e}")))?;
        if v.format != MANIFEST_FORMAT {
            return Err(Error::UnsupportedFormat {
                record: record.into(),
                found: v.format,
                supported: MANIFEST_FORMAT,
                location: None,
            });
        }
        let wire: ManifestWire = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(record, format!("not a manifest: {e}")))?;
        let entries = wire
            .files
            .into_iter()
            .map(|e| {
                Ok(ManifestEntry {
                    path: RelPath::new(e.path)?,
                    size: e.size,
                    digest: e.digest,
                    sha256: e.sha256,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::check(&entries)?;
        let m = Manifest { entries };
        if m.to_bytes() != bytes {
            return Err(Error::corrupt(record, "bytes are not in canonical form"));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: &str) -> ManifestEntry {
        ManifestEntry {
            path: RelPath::new(p).unwrap(),
            size: p.len() as u64,
            digest: Digest::of(p.as_bytes()),
            sha256: Some(Sha256::of(p.as_bytes())),
        }
    }

    #[test]
    fn hostile_manifest_bytes_are_rejected_with_typed_errors() {
        let good = Manifest::new(vec![entry("a"), entry("b/c")]).unwrap();
        let text = String::from_utf8(good.to_bytes()).unwrap();
        for (from, to) in [
            ("\"b/c\"", "\"../c\""),
            ("\"b/c\"", "\"/etc/passwd\""),
            ("\"b/c\"", "\"a/../../b\""),
            ("\"b/c\"", "\"b\\\\c\""),
            ("\"b/c\"", "\"b\\u0000c\""),
            ("\"b/c\"", "\"a\""),
            ("\"b/c\"", "\"A\""),
        ] {
            let hostile = text.replace(from, to);
            assert_ne!(hostile, text);
            let err = Manifest::from_bytes(hostile.as_bytes()).unwrap_err();
            assert!(matches!(err, Error::InvalidPath { .. }), "{to}: {err:?}");
        }
    }

    #[test]
    fn unknown_format_and_non_canonical_bytes_are_rejected() {
        let err = Manifest::from_bytes(br#"{"format":9,"files":[]}"#).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedFormat { found: 9, .. }),
            "{err:?}"
        );
        let err = Manifest::from_bytes(br#"{ "format":1,"files":[]}"#).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        let err = Manifest::from_bytes(b"\xff\x00garbage").unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        assert!(Manifest::from_bytes(br#"{"format":1,"files":[]}"#).is_ok());
    }

    #[test]
    fn digest_is_stable() {
        // Pinned: changing the canonical encoding changes every artifact's identity.
        let m = Manifest::new(vec![ManifestEntry {
            path: RelPath::new("model.bin").unwrap(),
            size: 5,
            digest: Digest::of(b"hello"),
            sha256: None,
        }])
        .unwrap();
        assert_eq!(
            String::from_utf8(m.to_bytes()).unwrap(),
            r#"{"format":1,"files":[{"path":"model.bin","size":5,"digest":"blake3:ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"}]}"#
        );
    }

    /// Pinned like `digest_is_stable`: an entry with its SHA-256 has it after
    /// `digest`, as 64 lowercase hex digits.
    #[test]
    fn digest_with_sha256_is_stable() {
        let m = Manifest::new(vec![ManifestEntry {
            path: RelPath::new("model.bin").unwrap(),
            size: 5,
            digest: Digest::of(b"hello"),
            sha256: Some(Sha256::of(b"hello")),
        }])
        .unwrap();
        let text = r#"{"format":1,"files":[{"path":"model.bin","size":5,"digest":"blake3:ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f","sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}]}"#;
        assert_eq!(String::from_utf8(m.to_bytes()).unwrap(), text);
        assert_eq!(
            m.digest().to_string(),
            "blake3:a1330db83eef53b8d145b0879dfeb7fd3755171f3e7de119f936362416bbe088"
        );
        assert_eq!(Manifest::from_bytes(text.as_bytes()).unwrap(), m);
    }

    /// A manifest written before SHA-256 was recorded (no `sha256` anywhere)
    /// decodes with `None` and keeps its bytes, hence its digest; one entry may
    /// have it and another not.
    #[test]
    fn a_manifest_without_sha256_decodes_and_keeps_its_digest() {
        let old = br#"{"format":1,"files":[{"path":"model.bin","size":5,"digest":"blake3:ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"}]}"#;
        let m = Manifest::from_bytes(old).unwrap();
        assert_eq!(m.entries()[0].sha256, None);
        assert_eq!(m.to_bytes(), old);
        assert_eq!(m.digest(), Digest::of(old));

        let mut no_sha = entry("b");
        no_sha.sha256 = None;
        let mixed = Manifest::new(vec![entry("a"), no_sha]).unwrap();
        assert_eq!(Manifest::from_bytes(&mixed.to_bytes()).unwrap(), mixed);
    }

    /// Only the canonical spelling of `sha256` decodes: a `null`, upper-case
    /// hex, a prefix or the field before `digest` would give one artifact a
    /// second identity.
    #[test]
    fn non_canonical_sha256_is_rejected() {
        let good = Manifest::new(vec![entry("a")]).unwrap();
        let text = String::from_utf8(good.to_bytes()).unwrap();
        let hex = good.entries()[0].sha256.unwrap().to_hex();
        let sha_field = format!(r#","sha256":"{hex}""#);
        for hostile in [
            text.replace(&sha_field, r#","sha256":null"#),
            text.replace(&hex, &hex.to_ascii_uppercase()),
            text.replace(&sha_field, &format!(r#","sha256":"sha256:{hex}""#)),
            text.replace(&sha_field, "")
                .replace(r#""digest""#, &format!(r#""sha256":"{hex}","digest""#)),
        ] {
            assert_ne!(hostile, text);
            let err = Manifest::from_bytes(hostile.as_bytes()).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{hostile}: {err:?}");
        }
        let short = text.replace(&hex, &hex[..62]);
        assert!(Manifest::from_bytes(short.as_bytes()).is_err());
    }
}
