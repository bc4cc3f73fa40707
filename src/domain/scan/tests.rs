//! The hostile corpus, written opcode by opcode, and random and mutated input.
//! Files that Python's `pickle` and a torch-shaped writer produce are in
//! `tests/scan_corpus.rs`.

use super::*;
use proptest::prelude::*;

fn limits() -> ScanLimits {
    ScanLimits::default()
}

fn refusal(path: &str, bytes: &[u8]) -> Refusal {
    let v = scan(path, bytes, &limits());
    match v.refused {
        Some(r) => r,
        None => panic!("{path} passed as {}: {bytes:?}", v.format),
    }
}

fn passes(path: &str, bytes: &[u8]) -> FileFormat {
    let v = scan(path, bytes, &limits());
    assert_eq!(v.refused, None, "{path} was refused: {v}");
    v.format
}

/// A length-prefixed BINUNICODE.
fn unicode(s: &str) -> Vec<u8> {
    let mut b = vec![b'X'];
    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
    b
}

/// A torch state dict `{"weight": tensor}` as `torch.save` pickles it at
/// protocol 2: an OrderedDict rebuilt by REDUCE, a tensor by
/// `_rebuild_tensor_v2` over a persistent-id storage, and the `_metadata`
/// attribute set by BUILD.
fn state_dict() -> Vec<u8> {
    let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01".to_vec();
    p.extend(unicode("weight"));
    p.extend(b"q\x02ctorch._utils\n_rebuild_tensor_v2\nq\x03((");
    p.extend(unicode("storage"));
    p.extend(b"q\x04ctorch\nFloatStorage\nq\x05");
    p.extend(unicode("0"));
    p.extend(unicode("cpu"));
    p.extend(
        b"K\x04tq\x06QK\x00K\x02K\x02\x86q\x07K\x02K\x01\x86q\x08\x89h\x00)Rq\x09tq\x0aRq\x0b",
    );
    p.extend(b"s}q\x0c");
    p.extend(unicode("_metadata"));
    p.extend(b"h\x00)Rq\x0dsb.");
    p
}

#[test]
fn a_torch_state_dict_pickle_passes() {
    assert_eq!(
        passes("pytorch_model.bin", &state_dict()),
        FileFormat::Pickle
    );
    // Whatever it is called.
    assert_eq!(passes("weights", &state_dict()), FileFormat::Pickle);
}

#[test]
fn os_system_at_protocol_0_is_refused_by_name_even_in_a_text_file() {
    let evil = b"cos\nsystem\n(S'echo pwned'\ntR.";
    for path in ["model.pkl", "README.txt", "config.json", "noext"] {
        let v = scan(path, evil, &limits());
        assert_eq!(v.format, FileFormat::Pickle, "{path}");
        assert_eq!(
            v.refused,
            Some(Refusal::ForbiddenGlobal {
                module: "os".into(),
                name: "system".into(),
                offset: 0
            }),
            "{path}"
        );
    }
}

#[test]
fn builtins_eval_through_stack_global_is_refused() {
    let mut p = b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94".to_vec();
    p.extend(b"\x8c\x08print(1)\x94\x85\x94R\x94.");
    assert!(matches!(
        refusal("m.pt", &p),
        Refusal::ForbiddenGlobal { module, name, offset: 20 } if module == "builtins" && name == "eval"
    ));
    // The same strings fetched back from the memo are still read.
    let p = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93).";
    assert!(matches!(
        refusal("m.pt", p),
        Refusal::ForbiddenGlobal { module, name, .. } if module == "os" && name == "system"
    ));
}

#[test]
fn a_stack_global_the_scanner_cannot_read_is_refused() {
    // The module name is the result of a call, not a string in the bytes.
    let p = b"\x80\x04ccollections\nOrderedDict\n)R\x8c\x06system\x93).";
    assert!(matches!(
        refusal("m.pkl", p),
        Refusal::ForbiddenCall { opcode, .. } if opcode == "STACK_GLOBAL"
    ));
}

#[test]
fn a_reduce_chain_calling_a_computed_value_is_refused() {
    // OrderedDict() is allowed; calling its result is not.
    let p = b"\x80\x02ccollections\nOrderedDict\n)R)R.";
    assert!(matches!(
        refusal("m.pkl", p),
        Refusal::ForbiddenCall { opcode, offset: 30, .. } if opcode == "REDUCE"
    ));
    // NEWOBJ of a string.
    let p = b"\x80\x02X\x01\x00\x00\x00a)\x81.";
    assert!(
        matches!(refusal("m.pkl", p), Refusal::ForbiddenCall { opcode, .. } if opcode == "NEWOBJ")
    );
    // BUILD on a global would set attributes on a class.
    let p = b"\x80\x02ccollections\nOrderedDict\n}b.";
    assert!(
        matches!(refusal("m.pkl", p), Refusal::ForbiddenCall { opcode, .. } if opcode == "BUILD")
    );
}

#[test]
fn opcodes_that_import_by_themselves_are_refused() {
    for (p, op) in [
        (&b"(cos\nsystem\nS'ls'\no."[..], "GLOBAL"),
        (b"(S'ls'\nios\nsystem\n.", "INST"),
        (b"\x80\x02\x82\x01).", "EXT1"),
        (b"\x80\x02\x83\x01\x00).", "EXT2"),
        (b"\x80\x02Pkey\n.", "PERSID"),
        (b"\x80\x05\x97.", "NEXT_BUFFER"),
    ] {
        let r = refusal("m.pkl", p);
        match (op, &r) {
            ("GLOBAL", Refusal::ForbiddenGlobal { module, .. }) => assert_eq!(module, "os"),
            (_, Refusal::ForbiddenOpcode { opcode, .. }) => assert_eq!(opcode, op),
            _ => panic!("{op}: {r:?}"),
        }
    }
}

#[test]
fn a_proto_inside_a_pickle_is_refused() {
    let p = b"\x80\x02]\x80\x02.";
    assert_eq!(
        refusal("m.pkl", p),
        Refusal::Malformed {
            offset: 3,
            reason: "PROTO after the start of the pickle".into()
        }
    );
    assert!(
        matches!(refusal("m.pkl", b"\x80\x09]."), Refusal::Malformed { reason, .. } if reason.contains("protocol 9"))
    );
}

#[test]
fn a_huge_memo_index_is_refused_before_anything_is_allocated() {
    let p = b"\x80\x02}r\xff\xff\xff\xff.";
    assert!(matches!(
        refusal("m.pkl", p),
        Refusal::MemoIndex {
            index: 4_294_967_295,
            offset: 3,
            ..
        }
    ));
    let p = b"\x80\x02}p99999999999999999999\n.";
    assert!(matches!(refusal("m.pkl", p), Refusal::Malformed { .. }));
    let p = b"\x80\x02}p9999999\n.";
    assert!(matches!(
        refusal("m.pkl", p),
        Refusal::MemoIndex {
            index: 9_999_999,
            ..
        }
    ));
    let p = b"\x80\x02h\x05.";
    assert!(
        matches!(refusal("m.pkl", p), Refusal::Malformed { reason, .. } if reason.contains("never set"))
    );
}

#[test]
fn budgets_refuse_deep_nesting_long_streams_and_huge_lengths() {
    let deep = [b"\x80\x02".to_vec(), vec![b'('; 10_000], b"N.".to_vec()].concat();
    assert!(
        matches!(refusal("m.pkl", &deep), Refusal::Budget { what, limit: 512 } if what.contains("nesting"))
    );

    let long = [b"\x80\x02]".to_vec(), b"Na".repeat(1000), b".".to_vec()].concat();
    let small = ScanLimits {
        max_opcodes: 100,
        ..ScanLimits::default()
    };
    assert!(matches!(
        scan("m.pkl", &long, &small).refused,
        Some(Refusal::Budget { what, limit: 100 }) if what == "opcodes"
    ));
    let stack = ScanLimits {
        max_stack: 10,
        ..ScanLimits::default()
    };
    let wide = [b"\x80\x02".to_vec(), b"N".repeat(11), b".".to_vec()].concat();
    assert!(
        matches!(scan("m.pkl", &wide, &stack).refused, Some(Refusal::Budget { what, .. }) if what == "stack entries")
    );

    // A 4 GiB string in a 12-byte file: truncated, nothing allocated.
    let p = b"\x80\x04\x8d\xff\xff\xff\xff\x00\x00\x00\x00";
    assert!(matches!(refusal("m.pkl", p), Refusal::Truncated { .. }));
}

#[test]
fn truncated_streams_are_refused_at_every_cut() {
    let full = state_dict();
    for cut in 0..full.len() {
        let r = refusal("m.pt", &full[..cut]);
        assert!(
            matches!(r, Refusal::Truncated { .. } | Refusal::Malformed { .. }),
            "cut at {cut}: {r:?}"
        );
    }
}

#[test]
fn every_pickle_of_a_file_is_walked() {
    let evil = b"cos\nsystem\n(S'echo pwned'\ntR.";
    let two = [state_dict(), evil.to_vec()].concat();
    assert!(
        matches!(refusal("m.pkl", &two), Refusal::ForbiddenGlobal { offset, .. } if offset == state_dict().len() as u64)
    );
    // Bytes after the last pickle that are no pickle are data.
    let tail = [state_dict(), b"\x00\x01 raw bytes".to_vec()].concat();
    passes("m.pkl", &tail);
}

#[test]
fn a_large_legacy_file_is_read_only_as_far_as_its_pickles() {
    let mut f = LEGACY_TORCH_MAGIC.to_vec();
    f.extend(b"\x80\x02M\xe9\x03.\x80\x02}q\x00.");
    f.extend(state_dict());
    f.extend(b"\x80\x02]q\x00X\x01\x00\x00\x000q\x01a.");
    f.extend(vec![0u8; 8 << 20]);
    let mut s = Scanner::new("old.pt", f.len() as u64, limits());
    let mut read = 0;
    let v = loop {
        match s.step() {
            ScanStep::Need(r) => {
                read += r.end - r.start;
                s.supply(
                    r.start,
                    Bytes::copy_from_slice(&f[r.start as usize..r.end as usize]),
                );
            }
            ScanStep::Done(v) => break v,
        }
    };
    assert!(v.passed(), "{v}");
    assert!(read <= SNIFF_BYTES + 8, "read {read} bytes of {}", f.len());
    // A pickle that goes on past the first read is read further.
    let long = [b"\x80\x02]".to_vec(), b"Na".repeat(100_000), b".".to_vec()].concat();
    assert_eq!(passes("long.pkl", &long), FileFormat::Pickle);
}

#[test]
fn a_legacy_torch_file_is_five_pickles_and_raw_storages() {
    let mut f = LEGACY_TORCH_MAGIC.to_vec();
    f.extend(b"\x80\x02M\xe9\x03."); // protocol version 1001
    f.extend(b"\x80\x02}q\x00."); // system info
    f.extend(state_dict());
    f.extend(b"\x80\x02]q\x00X\x01\x00\x00\x000q\x01a."); // storage keys
    // Raw storage bytes that would read as a forbidden GLOBAL if walked.
    f.extend(b"cos\nsystem\n(S'x'\ntR.");
    assert_eq!(passes("old.pt", &f), FileFormat::Pickle);
}

#[test]
fn text_and_binary_data_are_data_and_named_formats_are_checked() {
    for (path, bytes) in [
        ("config.json", &br#"{"a": 1}"#[..]),
        ("vocab.txt", b"cat\ndog\nfish\n"),
        ("notes.txt", b"really long lines of text"),
        ("notes.md", b"just some notes"),
        ("model.py", b"import os\nos.system('x')\n"),
        ("img.png", b"\x89PNG\r\n\x1a\n\x00\x00"),
        ("arr.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'}"),
        ("empty", b""),
    ] {
        assert_eq!(passes(path, bytes), FileFormat::Data, "{path}");
    }
    assert_eq!(passes("m.onnx", b"\x08\x07\x12\x04onnx"), FileFormat::Onnx);
    assert_eq!(
        passes("m.bin.gguf", b"GGUF\x03\x00\x00\x00"),
        FileFormat::Gguf
    );
    assert_eq!(passes("m", b"GGUF\x03\x00\x00\x00"), FileFormat::Gguf);
    assert!(matches!(
        refusal("m.gguf", b"GGML"),
        Refusal::NotFormat {
            format: FileFormat::Gguf,
            ..
        }
    ));
    for bad in [
        &b"\x05\x00\x00\x00\x00\x00\x00\x00{}"[..],
        b"\x02\x00\x00\x00\x00\x00\x00\x00[]",
        b"\x01",
    ] {
        assert!(matches!(
            refusal("m.safetensors", bad),
            Refusal::NotFormat {
                format: FileFormat::Safetensors,
                ..
            }
        ));
    }
    // A pickle-family name on bytes that are no pickle.
    assert!(matches!(
        refusal("m.bin", b"GGUF\x03\x00\x00\x00"),
        Refusal::UnknownOpcode { .. } | Refusal::Truncated { .. }
    ));
    assert!(matches!(
        refusal("empty.pt", b""),
        Refusal::Truncated { offset: 0 }
    ));
}

/// A ZIP whose members are all stored, as PyTorch writes it.
struct ZipBuilder {
    out: Vec<u8>,
    central: Vec<u8>,
    count: u64,
    zip64: bool,
}

impl ZipBuilder {
    fn new() -> Self {
        ZipBuilder {
            out: Vec::new(),
            central: Vec::new(),
            count: 0,
            zip64: false,
        }
    }

    fn member(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw_member(name.as_bytes(), data, 0, data.len() as u32)
    }

    fn raw_member(&mut self, name: &[u8], data: &[u8], method: u16, usize_: u32) -> &mut Self {
        let local = self.out.len() as u32;
        let le16 = |v: u16| v.to_le_bytes();
        let le32 = |v: u32| v.to_le_bytes();
        self.out.extend(le32(0x0403_4b50));
        self.out.extend(le16(20));
        self.out.extend(le16(0));
        self.out.extend(le16(method));
        self.out.extend([0; 8]); // time, date, crc
        self.out.extend(le32(data.len() as u32));
        self.out.extend(le32(usize_));
        self.out.extend(le16(name.len() as u16));
        self.out.extend(le16(0));
        self.out.extend(name);
        self.out.extend(data);
        self.central.extend(le32(0x0201_4b50));
        self.central.extend(le16(20));
        self.central.extend(le16(20));
        self.central.extend(le16(0));
        self.central.extend(le16(method));
        self.central.extend([0; 8]);
        self.central.extend(le32(data.len() as u32));
        self.central.extend(le32(usize_));
        self.central.extend(le16(name.len() as u16));
        self.central.extend([0; 12]); // extra, comment, disk, attributes
        self.central.extend(le32(local));
        self.central.extend(name);
        self.count += 1;
        self
    }

    fn finish(&self) -> Vec<u8> {
        let mut out = self.out.clone();
        let cd_offset = out.len() as u64;
        out.extend(&self.central);
        let cd_size = self.central.len() as u64;
        if self.zip64 {
            let at64 = out.len() as u64;
            out.extend(0x0606_4b50u32.to_le_bytes());
            out.extend(44u64.to_le_bytes());
            out.extend([45, 0, 45, 0]);
            out.extend([0; 8]); // disk numbers
            out.extend(self.count.to_le_bytes());
            out.extend(self.count.to_le_bytes());
            out.extend(cd_size.to_le_bytes());
            out.extend(cd_offset.to_le_bytes());
            out.extend(0x0706_4b50u32.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(at64.to_le_bytes());
            out.extend(1u32.to_le_bytes());
        }
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend([0; 4]);
        let (n, size, off) = if self.zip64 {
            (0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF)
        } else {
            (self.count as u16, cd_size as u32, cd_offset as u32)
        };
        out.extend(n.to_le_bytes());
        out.extend(n.to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend(off.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }
}

fn torch_zip(pkl: &[u8]) -> Vec<u8> {
    ZipBuilder::new()
        .member("archive/data.pkl", pkl)
        .member("archive/byteorder", b"little")
        .member("archive/data/0", &[0u8; 16])
        .member("archive/version", b"3\n")
        .member("archive/.data/serialization_id", b"0123")
        .finish()
}

#[test]
fn a_torch_zip_passes_and_its_pickle_is_walked() {
    assert_eq!(
        passes("model.pt", &torch_zip(&state_dict())),
        FileFormat::TorchZip
    );
    let mut z = ZipBuilder::new();
    z.zip64 = true;
    z.member("archive/data.pkl", &state_dict());
    assert_eq!(passes("model.pt", &z.finish()), FileFormat::TorchZip);
    let evil = torch_zip(b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00ls\x85R.");
    let v = scan("model.pt", &evil, &limits());
    assert_eq!(v.member.as_deref(), Some("archive/data.pkl"));
    assert!(
        matches!(v.refused, Some(Refusal::ForbiddenGlobal { module, .. }) if module == "posix")
    );
    // A ZIP without pickles.
    let npz = ZipBuilder::new().member("a.npy", b"\x93NUMPY").finish();
    assert_eq!(passes("arrays.npz", &npz), FileFormat::Zip);
}

#[test]
fn hostile_archives_are_refused() {
    let archive_reason = |bytes: &[u8]| match refusal("m.pt", bytes) {
        Refusal::Archive { reason } => reason,
        other => panic!("{other:?}"),
    };
    for name in [
        "archive/../../etc/passwd",
        "/abs/data.pkl",
        "archive\\data.pkl",
        "archive//x",
        "archive/\u{0}x",
    ] {
        let z = ZipBuilder::new().member(name, b"x").finish();
        assert!(archive_reason(&z).contains("member name"), "{name:?}");
    }
    let z = ZipBuilder::new()
        .raw_member(b"archive/\xff", b"x", 0, 1)
        .finish();
    assert!(archive_reason(&z).contains("UTF-8"));
    let dup = ZipBuilder::new()
        .member("a/data.pkl", b"N.")
        .member("a/data.pkl", b"N.")
        .finish();
    assert!(archive_reason(&dup).contains("two members"));
    let two_roots = ZipBuilder::new()
        .member("a/data.pkl", b"N.")
        .member("b/data.pkl", b"N.")
        .finish();
    assert!(archive_reason(&two_roots).contains("two top-level"));
    let jit = ZipBuilder::new()
        .member("m/data.pkl", b"N.")
        .member("m/code/__torch__/m.py", b"x")
        .finish();
    assert!(archive_reason(&jit).contains("TorchScript"));
    // A ZIP bomb: 10 bytes claimed to inflate to 4 GiB. Nothing is inflated.
    let bomb = ZipBuilder::new()
        .raw_member(b"m/data.pkl", &[0; 10], 8, u32::MAX)
        .finish();
    assert!(archive_reason(&bomb).contains("compressed"));
    // Bytes between the directory and the end record: readers that look for
    // the directory differently would see different members.
    let z = torch_zip(b"N.");
    let gap = [&z[..z.len() - 22], b"junk", &z[z.len() - 22..]].concat();
    assert!(archive_reason(&gap).contains("central directory"));
    // Bytes before the first member: torch.load takes it for a legacy pickle,
    // and so does the scanner.
    let shifted = [b"junk".to_vec(), z.clone()].concat();
    assert!(matches!(
        refusal("m.pt", &shifted),
        Refusal::MemoIndex { .. }
    ));
    // The end record cut off, or counting members that are not there.
    let z = torch_zip(b"N.");
    assert!(archive_reason(&z[..z.len() - 1]).contains("end of central directory"));
    let mut lying = z.clone();
    let n = lying.len();
    lying[n - 12] = 9;
    assert!(archive_reason(&lying).contains("counts 9 members"));
    let many = ScanLimits {
        max_zip_members: 3,
        ..ScanLimits::default()
    };
    assert!(
        matches!(scan("m.pt", &z, &many).refused, Some(Refusal::Budget { what, .. }) if what == "ZIP members")
    );
}

#[test]
fn the_scanner_asks_for_ranges_and_reads_only_what_it_needs() {
    // A 1 MiB data member after the pickle: never read.
    let big = vec![0u8; 1 << 20];
    let z = ZipBuilder::new()
        .member("archive/data.pkl", &state_dict())
        .member("archive/data/0", &big)
        .finish();
    let mut s = Scanner::new("m.pt", z.len() as u64, limits());
    let mut read = 0;
    let mut asks = 0;
    let v = loop {
        match s.step() {
            ScanStep::Need(r) => {
                asks += 1;
                read += r.end - r.start;
                s.supply(
                    r.start,
                    Bytes::copy_from_slice(&z[r.start as usize..r.end as usize]),
                );
            }
            ScanStep::Done(v) => break v,
        }
    };
    assert!(v.passed(), "{v}");
    assert!(read < 200 * 1024, "read {read} bytes");
    assert!(asks <= 6, "{asks} ranges");
}

fn mutate(base: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut b = base.to_vec();
    for &(i, v) in edits {
        if !b.is_empty() {
            let at = i % b.len();
            b[at] = v;
        }
    }
    b.truncate(cut.min(b.len()));
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                name in prop::sample::select(vec!["m.pkl", "m.pt", "m.bin", "m.safetensors", "m.gguf", "m.txt", "m"])) {
        let v = scan(name, &bytes, &limits());
        // Same bytes, same verdict.
        prop_assert_eq!(&v, &scan(name, &bytes, &limits()));
    }

    #[test]
    fn mutated_pickles_and_archives_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
                                                cut in any::<usize>(),
                                                zip in any::<bool>()) {
        let base = if zip { torch_zip(&state_dict()) } else { state_dict() };
        let bytes = mutate(&base, &edits, cut);
        let v = scan("m.pt", &bytes, &limits());
        // Fed in ranges, the verdict is the same as on the whole file.
        let mut s = Scanner::new("m.pt", bytes.len() as u64, limits());
        let stepped = loop {
            match s.step() {
                ScanStep::Need(r) => s.supply(r.start, Bytes::copy_from_slice(&bytes[r.start as usize..r.end as usize])),
                ScanStep::Done(v) => break v,
            }
        };
        prop_assert_eq!(v, stepped);
    }

    #[test]
    fn random_opcode_soup_never_panics(ops in proptest::collection::vec(
        prop::sample::select(b"()012NJKMGIL.SVTUXBCltdsaeughjpqr}]c\x80\x81\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96Qbio\n\x00\x01\xff".to_vec()),
        0..300)) {
        let _ = scan("m.pkl", &ops, &limits());
        let _ = scan("m.txt", &ops, &limits());
    }
}
