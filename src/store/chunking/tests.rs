use std::collections::HashSet;
use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

/// Small sizes, so kilobytes of test data make many chunks of every kind.
fn small() -> ChunkParams {
    ChunkParams::new(1024, 256, 1024, 4096).expect("params")
}

/// Bytes that look random, from a seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

/// A safetensors file: `tensors` (name, bytes) laid out in order, and the
/// metadata entries given.
fn safetensors(tensors: &[(&str, &[u8])], metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let m: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        header.insert("__metadata__".into(), m.into());
    }
    let mut at = 0;
    for (name, bytes) in tensors {
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "BF16", "shape": [bytes.len() / 2], "data_offsets": [at, at + bytes.len()]}),
        );
        at += bytes.len();
    }
    let mut json = serde_json::to_vec(&header).expect("json");
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut file = (json.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&json);
    for (_, bytes) in tensors {
        file.extend_from_slice(bytes);
    }
    file
}

/// Checks that `chunks` cover `bytes` contiguously with the right hashes and
/// sizes within the parameters.
fn check_cover(bytes: &[u8], chunks: &[Chunk], params: &ChunkParams) {
    let mut at = 0u64;
    for c in chunks {
        assert_eq!(c.offset, at, "chunks are contiguous");
        assert!(c.len > 0, "no empty chunk");
        assert!(c.len <= params.cdc_max().max(params.tensor_block()));
        let r = c.offset as usize..c.end() as usize;
        assert_eq!(
            c.hash,
            Digest::of(&bytes[r]),
            "hash of chunk at {}",
            c.offset
        );
        at = c.end();
    }
    assert_eq!(at, bytes.len() as u64, "chunks cover the whole file");
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

/// The chunk digests of the tensor data of a safetensors file (what lies
/// after its header region).
fn hashes(chunks: &[Chunk]) -> HashSet<Digest> {
    chunks.iter().map(|c| c.hash).collect()
}

#[test]
fn an_empty_file_has_no_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(&dir, "empty", b"");
    assert_eq!(
        chunk_file(&p, &ChunkParams::default()).expect("chunk"),
        vec![]
    );
    assert_eq!(file_format(&p).expect("format"), Format::Opaque);
    assert!(chunk_bytes(b"", &small()).is_empty());
}

#[test]
fn a_missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = chunk_file(&dir.path().join("nope"), &small()).expect_err("missing");
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn streaming_cuts_where_the_whole_buffer_would() {
    // Larger than the read buffer, so the window is refilled and compacted
    // many times; the cuts must be those of fastcdc over the whole slice.
    let bytes = noise(7, 11 << 20);
    let params = ChunkParams::new(1 << 20, 16 << 10, 64 << 10, 256 << 10).expect("params");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(&dir, "opaque.bin", &bytes);
    let ours = chunk_file(&p, &params).expect("chunk");
    let theirs: Vec<(u64, u32)> = fastcdc::v2020::FastCDC::with_level(
        &bytes,
        16 << 10,
        64 << 10,
        256 << 10,
        fastcdc::v2020::Normalization::Level1,
    )
    .map(|c| (c.offset as u64, c.length as u32))
    .collect();
    let ours_cuts: Vec<(u64, u32)> = ours.iter().map(|c| (c.offset, c.len)).collect();
    assert_eq!(ours_cuts, theirs);
    check_cover(&bytes, &ours, &params);
    assert_eq!(chunk_bytes(&bytes, &params), ours);
}

#[test]
fn an_insertion_moves_only_nearby_content_defined_cuts() {
    let base = noise(1, 200_000);
    let mut shifted = b"twelve bytes".to_vec();
    shifted.extend_from_slice(&base);
    let a = hashes(&chunk_bytes(&base, &small()));
    let b = chunk_bytes(&shifted, &small());
    let kept = b.iter().filter(|c| a.contains(&c.hash)).count();
    assert!(kept + 3 >= b.len(), "{kept} of {} chunks kept", b.len());
}

#[test]
fn a_changed_header_changes_no_tensor_chunk() {
    let embed = noise(2, 40_000);
    let q = noise(3, 9_000);
    let v = noise(4, 5_000);
    let tensors: [(&str, &[u8]); 3] = [("embed", &embed), ("q", &q), ("v", &v)];
    let a = safetensors(&tensors, &[("format", "pt")]);
    let b = safetensors(
        &tensors,
        &[
            ("format", "pt"),
            ("note", "a longer header shifts every offset"),
        ],
    );
    assert_ne!(a.len(), b.len());
    let ca = chunk_bytes(&a, &small());
    let cb = chunk_bytes(&b, &small());
    check_cover(&a, &ca, &small());
    check_cover(&b, &cb, &small());
    let header_a = 8 + u64::from_le_bytes(a[..8].try_into().expect("8"));
    let header_b = 8 + u64::from_le_bytes(b[..8].try_into().expect("8"));
    let tensor_chunks = |c: &[Chunk], h: u64| -> Vec<Digest> {
        c.iter().filter(|c| c.offset >= h).map(|c| c.hash).collect()
    };
    // Every tensor chunk of one is a tensor chunk of the other, in order.
    assert_eq!(tensor_chunks(&ca, header_a), tensor_chunks(&cb, header_b));
    // And no chunk straddles the header and the data.
    assert!(ca.iter().any(|c| c.end() == header_a));
    assert!(cb.iter().any(|c| c.end() == header_b));
    // The blocks count from each tensor's start: 40,000 = 39 × 1024 + 64.
    let embed_chunks: Vec<u32> = ca
        .iter()
        .filter(|c| c.offset >= header_a && c.end() <= header_a + 40_000)
        .map(|c| c.len)
        .collect();
    assert_eq!(embed_chunks.len(), 40);
    assert_eq!(embed_chunks[39], 64);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(&dir, "a.safetensors", &a);
    assert_eq!(file_format(&p).expect("format"), Format::Safetensors);
    assert_eq!(chunk_file(&p, &small()).expect("chunk"), ca);
}

#[test]
fn appended_rows_keep_the_prefix_chunks() {
    let row = 512; // bytes per row
    let embed = noise(5, 100 * row);
    let mut grown = embed.clone();
    grown.extend_from_slice(&noise(6, 7 * row));
    let norm = noise(8, 2048);
    let a = safetensors(&[("embed", &embed), ("norm", &norm)], &[]);
    let b = safetensors(&[("embed", &grown), ("norm", &norm)], &[("vocab", "+7")]);
    let ca = chunk_bytes(&a, &small());
    let cb = hashes(&chunk_bytes(&b, &small()));
    let header_a = 8 + u64::from_le_bytes(a[..8].try_into().expect("8"));
    // Every whole block of the old rows is kept; only the last, partial one
    // (51,200 = 50 × 1024 exactly here, so none) and the new rows are new.
    let old_blocks: Vec<&Chunk> = ca
        .iter()
        .filter(|c| c.offset >= header_a && c.end() <= header_a + embed.len() as u64)
        .collect();
    assert_eq!(old_blocks.len(), 50);
    assert!(old_blocks.iter().all(|c| cb.contains(&c.hash)));
    // The other tensor is unchanged too.
    let norm_chunks = ca
        .iter()
        .filter(|c| c.offset >= header_a + embed.len() as u64);
    assert!(norm_chunks.clone().count() == 2);
    assert!(norm_chunks.into_iter().all(|c| cb.contains(&c.hash)));
}

/// A file with the given header bytes (after the length prefix, which is
/// `claimed` or the true length) and some data.
fn hostile(header: &[u8], claimed: Option<u64>, data: usize) -> Vec<u8> {
    let mut f = claimed
        .unwrap_or(header.len() as u64)
        .to_le_bytes()
        .to_vec();
    f.extend_from_slice(header);
    f.extend_from_slice(&noise(9, data));
    f
}

#[test]
fn hostile_safetensors_headers_fall_back_to_content_defined_chunks() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_meta = format!(
        "{{\"__metadata__\":{}1{}}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("huge length", hostile(b"{}", Some(u64::MAX), 5000)),
        ("length past the end", hostile(b"{}", Some(1 << 20), 5000)),
        ("length over the budget", hostile(b"{}", Some(MAX_HEADER + 1), 5000)),
        ("not JSON", hostile(b"{this is not json at all}", None, 5000)),
        ("not an object", hostile(b"[1, 2, 3]", None, 5000)),
        ("deep nesting", hostile(deep.as_bytes(), None, 5000)),
        ("deep metadata", hostile(deep_meta.as_bytes(), None, 5000)),
        (
            "offsets past the end",
            hostile(br#"{"t":{"dtype":"BF16","shape":[9],"data_offsets":[0,999999]}}"#, None, 5000),
        ),
        (
            "overlapping tensors",
            hostile(
                br#"{"a":{"dtype":"U8","shape":[3000],"data_offsets":[0,3000]},"b":{"dtype":"U8","shape":[3000],"data_offsets":[2000,5000]}}"#,
                None,
                5000,
            ),
        ),
        (
            "reversed offsets",
            hostile(br#"{"t":{"dtype":"U8","shape":[1],"data_offsets":[300,200]}}"#, None, 5000),
        ),
        (
            "negative offset",
            hostile(br#"{"t":{"dtype":"U8","shape":[1],"data_offsets":[-1,200]}}"#, None, 5000),
        ),
        (
            "missing offsets",
            hostile(br#"{"t":{"dtype":"U8","shape":[1]}}"#, None, 5000),
        ),
        ("shorter than a length", b"\x05\x00\x00".to_vec()),
        ("only a length", 2u64.to_le_bytes().to_vec()),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, bytes) in cases {
        let p = write(&dir, "hostile.safetensors", &bytes);
        assert_eq!(file_format(&p).expect(what), Format::Opaque, "{what}");
        let chunks = chunk_file(&p, &small()).expect(what);
        check_cover(&bytes, &chunks, &small());
        assert_eq!(chunk_bytes(&bytes, &small()), chunks, "{what}");
    }
}

#[test]
fn too_many_tensors_fall_back() {
    // MAX_TENSORS + 1 empty tensors fit in a header under the budget.
    let mut h = String::from("{");
    for i in 0..=MAX_TENSORS {
        h.push_str(&format!("\"{i:x}\":{{\"data_offsets\":[0,0]}},"));
    }
    h.pop();
    h.push('}');
    assert!((h.len() as u64) < MAX_HEADER);
    let bytes = hostile(h.as_bytes(), None, 100);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(&dir, "many.safetensors", &bytes);
    assert_eq!(file_format(&p).expect("format"), Format::Opaque);
}

/// A GGUF v3 file with the given metadata values (key, type, value bytes) and
/// tensors (name, bytes), aligned to `alignment`.
fn gguf(kv: &[(&str, u32, Vec<u8>)], tensors: &[(&str, &[u8])], alignment: u64) -> Vec<u8> {
    let s = |out: &mut Vec<u8>, v: &[u8]| {
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        out.extend_from_slice(v);
    };
    let mut f = b"GGUF".to_vec();
    f.extend_from_slice(&3u32.to_le_bytes());
    f.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    f.extend_from_slice(&(kv.len() as u64 + 1).to_le_bytes());
    s(&mut f, b"general.alignment");
    f.extend_from_slice(&4u32.to_le_bytes());
    f.extend_from_slice(&(alignment as u32).to_le_bytes());
    for (k, ty, v) in kv {
        s(&mut f, k.as_bytes());
        f.extend_from_slice(&ty.to_le_bytes());
        f.extend_from_slice(v);
    }
    let mut at = 0u64;
    for (name, bytes) in tensors {
        s(&mut f, name.as_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&at.to_le_bytes());
        at += (bytes.len() as u64).div_ceil(alignment) * alignment;
    }
    while !(f.len() as u64).is_multiple_of(alignment) {
        f.push(0);
    }
    for (_, bytes) in tensors {
        f.extend_from_slice(bytes);
        while !(f.len() as u64).is_multiple_of(alignment) {
            f.push(0);
        }
    }
    f
}

fn gguf_string(v: &str) -> Vec<u8> {
    let mut out = (v.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(v.as_bytes());
    out
}

#[test]
fn a_changed_gguf_header_changes_no_tensor_chunk() {
    let a_t = noise(10, 30_000);
    let b_t = noise(11, 7_000);
    let tensors: [(&str, &[u8]); 2] = [("a", &a_t), ("b", &b_t)];
    let mut array = 8u32.to_le_bytes().to_vec(); // an array of strings
    array.extend_from_slice(&3u64.to_le_bytes());
    for t in ["x", "yy", "zzz"] {
        array.extend_from_slice(&gguf_string(t));
    }
    let one = gguf(&[("general.name", 8, gguf_string("base"))], &tensors, 32);
    let two = gguf(
        &[
            (
                "general.name",
                8,
                gguf_string("a fine-tune with a longer name"),
            ),
            ("tokenizer.ggml.tokens", 9, array),
            ("general.file_type", 4, 7u32.to_le_bytes().to_vec()),
        ],
        &tensors,
        32,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let p1 = write(&dir, "one.gguf", &one);
    let p2 = write(&dir, "two.gguf", &two);
    assert_eq!(file_format(&p1).expect("format"), Format::Gguf);
    assert_eq!(file_format(&p2).expect("format"), Format::Gguf);
    let c1 = chunk_file(&p1, &small()).expect("chunk");
    let c2 = chunk_file(&p2, &small()).expect("chunk");
    check_cover(&one, &c1, &small());
    check_cover(&two, &c2, &small());
    let tensor_hashes = |c: &[Chunk], len: usize| -> Vec<Digest> {
        let start = len - 30_016 - 7_008;
        c.iter()
            .filter(|c| c.offset as usize >= start)
            .map(|c| c.hash)
            .collect()
    };
    assert_eq!(tensor_hashes(&c1, one.len()), tensor_hashes(&c2, two.len()));
    assert_eq!(tensor_hashes(&c1, one.len()).len(), 30 + 7);
}

#[test]
fn hostile_gguf_headers_fall_back() {
    let t = noise(12, 3000);
    let good = gguf(&[], &[("t", &t)], 32);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut v1 = good.clone();
    v1[4] = 1;
    cases.push(("version 1", v1));
    let mut many = good.clone();
    many[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    cases.push(("tensor count", many));
    let mut kvs = good.clone();
    kvs[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push(("metadata count", kvs));
    cases.push(("cut short", good[..40].to_vec()));
    let mut huge_string = good.clone();
    huge_string[24..32].copy_from_slice(&(1u64 << 50).to_le_bytes());
    cases.push(("huge key", huge_string));
    let mut array = 9u32.to_le_bytes().to_vec(); // nested arrays, deeper than allowed
    for _ in 0..6 {
        array.extend_from_slice(&1u64.to_le_bytes());
        array.extend_from_slice(&9u32.to_le_bytes());
    }
    array.extend_from_slice(&0u64.to_le_bytes());
    cases.push(("deep arrays", gguf(&[("deep", 9, array)], &[("t", &t)], 32)));
    let mut bad_alignment = gguf(&[], &[("t", &t)], 32);
    // The alignment value follows the key and its type.
    let at = 24 + 8 + "general.alignment".len() + 4;
    bad_alignment[at..at + 4].copy_from_slice(&48u32.to_le_bytes());
    cases.push(("alignment not a power of two", bad_alignment));
    // The tensor's offset: after the fixed fields (24), the alignment entry
    // (8 + 17 + 4 + 4) and the name, dimension count, dimension and type.
    let offset_at = 24 + 33 + 9 + 4 + 8 + 4;
    assert_eq!(good[offset_at..offset_at + 8], 0u64.to_le_bytes());
    let mut past_end = good.clone();
    past_end[offset_at..offset_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push(("offset past the end", past_end));
    let mut misaligned = good.clone();
    misaligned[offset_at..offset_at + 8].copy_from_slice(&1u64.to_le_bytes());
    cases.push(("misaligned offset", misaligned));
    let mut infos_into_data = good.clone();
    infos_into_data[8..16].copy_from_slice(&2u64.to_le_bytes());
    cases.push(("infos run into the data", infos_into_data));
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, bytes) in cases {
        let p = write(&dir, "hostile.gguf", &bytes);
        assert_eq!(file_format(&p).expect(what), Format::Opaque, "{what}");
        let chunks = chunk_file(&p, &small()).expect(what);
        check_cover(&bytes, &chunks, &small());
    }
}

#[test]
fn parameters_outside_their_ranges_are_rejected() {
    assert!(ChunkParams::new(63, 256, 1024, 4096).is_err());
    assert!(ChunkParams::new(1024, 62, 1024, 4096).is_err());
    assert!(ChunkParams::new(1024, 256, 1024, 32 << 20).is_err());
    assert!(ChunkParams::new(1024, 256, 255, 4096).is_err());
    let err = ChunkParams::new(1024, 4096, 1024, 4096).expect_err("min > avg");
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    assert!(ChunkParams::new(16 << 20, 1 << 20, 4 << 20, 16 << 20).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn chunks_cover_any_bytes_with_the_right_hashes(
        len in 0usize..40_000,
        seed in any::<u64>(),
        runs in any::<bool>(),
    ) {
        // Runs of equal bytes make cuts fall at the maximum; noise makes them
        // content-defined.
        let bytes: Vec<u8> = if runs {
            noise(seed, len).iter().map(|b| b & 0x80).collect()
        } else {
            noise(seed, len)
        };
        let chunks = chunk_bytes(&bytes, &small());
        check_cover(&bytes, &chunks, &small());
    }

    #[test]
    fn chunks_cover_any_safetensors_file(
        sizes in proptest::collection::vec(0usize..6000, 0..8),
        meta in "[a-z]{0,40}",
        seed in any::<u64>(),
        trailer in 0usize..3000,
    ) {
        let data: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| noise(seed ^ i as u64, n)).collect();
        let names: Vec<String> = (0..sizes.len()).map(|i| format!("t{i}")).collect();
        let tensors: Vec<(&str, &[u8])> = names.iter().map(|n| n.as_str()).zip(data.iter().map(|d| d.as_slice())).collect();
        let mut bytes = safetensors(&tensors, &[("m", &meta)]);
        bytes.extend_from_slice(&noise(seed, trailer));
        let chunks = chunk_bytes(&bytes, &small());
        check_cover(&bytes, &chunks, &small());
        // Each tensor's bytes start a chunk.
        let header = 8 + u64::from_le_bytes(bytes[..8].try_into().expect("8"));
        let starts: HashSet<u64> = chunks.iter().map(|c| c.offset).collect();
        let mut at = header;
        for d in &data {
            prop_assert!(d.is_empty() || starts.contains(&at));
            at += d.len() as u64;
        }
    }

    #[test]
    fn any_bytes_after_a_length_prefix_chunk_without_panic(
        header in proptest::collection::vec(any::<u8>(), 0..300),
        claimed in any::<bool>(),
        data in 0usize..2000,
    ) {
        let mut bytes = hostile(&header, if claimed { None } else { Some(header.len() as u64 + 7) }, data);
        if bytes.len() > 12 && claimed {
            bytes[8] = b'{';
        }
        let chunks = chunk_bytes(&bytes, &small());
        check_cover(&bytes, &chunks, &small());
    }
}
