//! Deterministic fine-tune scenarios for chunk-level deduplication (issue 17),
//! shared by `benches/dedup.rs` and `tests/dedup_scenarios.rs`.
//!
//! Each scenario is a base file and [`VARIANTS`] variants of it:
//!
//! - four Llama-shaped safetensors checkpoints in BF16 (embedding, per layer
//!   q/k/v/o projections with grouped-query k/v, gate/up/down MLP, two norms;
//!   final norm, `lm_head`), tensors laid out in name order as the
//!   `safetensors` library writes them, the header padded to 8 bytes; every
//!   variant has its own `__metadata__`, so every offset in it shifts:
//!   - [`Kind::LoraQv`]: a LoRA merged into the q and v projections of every
//!     layer (each of those tensors entirely new);
//!   - [`Kind::TopQuarter`]: the top quarter of the layers trained (every
//!     tensor of those layers new);
//!   - [`Kind::VocabExtended`]: `64 × v` rows appended to the embedding and to
//!     `lm_head` (variant `v`); the old rows unchanged;
//!   - [`Kind::LoraAll`]: a LoRA merged into every linear layer (all
//!     projections and MLP matrices new; embedding, norms, `lm_head` kept);
//! - two opaque binary files of the same size:
//!   - [`Kind::OpaqueRewrite`]: 5 % of the file rewritten in one contiguous
//!     run at a place of the variant's own;
//!   - [`Kind::OpaqueScattered`]: 1 % of the 4 KiB blocks rewritten, at
//!     places of the variant's own.
//!
//! Weights are seeded noise (BF16 weights have near-random low bytes, and a
//! merged LoRA changes nearly every element of a matrix), the same for the
//! same tensor in every file. The base is about `mib` MiB. [`Scenario::ideal`]
//! is the store size at tensor granularity: the base, plus for each variant
//! its header and every tensor that differs from the base (each variant's
//! changes are its own); for opaque files, the base plus the bytes rewritten.
//! Files are cached under the directory given, so a rerun at the same size
//! only checks their lengths.

#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Variants per scenario.
pub const VARIANTS: u64 = 9;

/// Rows appended to the embedding and `lm_head` per variant number.
pub const ROWS_PER_VARIANT: u64 = 64;

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// LoRA merged into the q and v projections.
    LoraQv,
    /// The top quarter of the layers trained.
    TopQuarter,
    /// Vocabulary extended by rows appended to the embedding and `lm_head`.
    VocabExtended,
    /// LoRA merged into every linear layer.
    LoraAll,
    /// An opaque file with a 5 % contiguous rewrite.
    OpaqueRewrite,
    /// An opaque file with 1 % of its 4 KiB blocks rewritten.
    OpaqueScattered,
}

/// Every scenario, in report order.
pub const ALL: [Kind; 6] = [
    Kind::LoraQv,
    Kind::TopQuarter,
    Kind::VocabExtended,
    Kind::LoraAll,
    Kind::OpaqueRewrite,
    Kind::OpaqueScattered,
];

impl Kind {
    /// A short name, for directories and reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::LoraQv => "lora-qv",
            Kind::TopQuarter => "top-quarter",
            Kind::VocabExtended => "vocab-extended",
            Kind::LoraAll => "lora-all",
            Kind::OpaqueRewrite => "opaque-5pct-run",
            Kind::OpaqueScattered => "opaque-1pct-4k",
        }
    }

    /// Whether the files are safetensors checkpoints.
    pub fn is_safetensors(self) -> bool {
        !matches!(self, Kind::OpaqueRewrite | Kind::OpaqueScattered)
    }

    fn seed(self) -> u64 {
        ALL.iter().position(|k| *k == self).unwrap_or(0) as u64 + 1
    }
}

/// A Llama-like shape (hidden size, MLP size, k/v width, layers, vocabulary).
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub hidden: u64,
    pub inter: u64,
    pub kv: u64,
    pub layers: u64,
    pub vocab: u64,
}

impl Shape {
    /// 16 layers, hidden size scaled so the BF16 checkpoint is about `mib` MiB
    /// (a multiple of 64; about 1.95 MiB at least): at 512 MiB, hidden 1088,
    /// MLP 2944, k/v 272, vocabulary 34,048.
    pub fn for_mib(mib: u64) -> Self {
        // Parameters ≈ 234.5 × hidden² (16 layers of 10.75 hidden², an
        // embedding and a head of 31.25 hidden² each), 2 bytes each.
        let hidden = ((((mib << 20) as f64 / 469.0).sqrt() / 64.0).round() as u64).max(1) * 64;
        let round64 = |x: f64| ((x / 64.0).round() as u64).max(1) * 64;
        Shape {
            hidden,
            inter: round64(hidden as f64 * 2.75),
            kv: hidden / 4,
            layers: 16,
            vocab: round64(hidden as f64 * 31.25),
        }
    }

    /// The tensors of a checkpoint with `extra` vocabulary rows: (name, rows,
    /// columns), in name order.
    pub fn tensors(&self, extra: u64) -> Vec<(String, u64, u64)> {
        let h = self.hidden;
        let mut t = vec![
            ("lm_head.weight".to_string(), self.vocab + extra, h),
            (
                "model.embed_tokens.weight".to_string(),
                self.vocab + extra,
                h,
            ),
            ("model.norm.weight".to_string(), 1, h),
        ];
        for l in 0..self.layers {
            let p = format!("model.layers.{l}.");
            t.push((format!("{p}input_layernorm.weight"), 1, h));
            t.push((format!("{p}mlp.down_proj.weight"), h, self.inter));
            t.push((format!("{p}mlp.gate_proj.weight"), self.inter, h));
            t.push((format!("{p}mlp.up_proj.weight"), self.inter, h));
            t.push((format!("{p}post_attention_layernorm.weight"), 1, h));
            t.push((format!("{p}self_attn.k_proj.weight"), self.kv, h));
            t.push((format!("{p}self_attn.o_proj.weight"), h, h));
            t.push((format!("{p}self_attn.q_proj.weight"), h, h));
            t.push((format!("{p}self_attn.v_proj.weight"), self.kv, h));
        }
        t.sort();
        t
    }
}

/// The layer number of a per-layer tensor name.
fn layer_of(name: &str) -> Option<u64> {
    name.strip_prefix("model.layers.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Whether variant `v` of `kind` changes tensor `name` entirely.
fn changed(kind: Kind, shape: &Shape, name: &str) -> bool {
    let linear = name.contains("_proj.");
    match kind {
        Kind::LoraQv => name.contains("q_proj.") || name.contains("v_proj."),
        Kind::TopQuarter => layer_of(name).is_some_and(|l| l >= shape.layers - shape.layers / 4),
        Kind::LoraAll => linear,
        _ => false,
    }
}

/// 64-bit mix (splitmix64's finalizer), for seeds.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn name_seed(name: &str) -> u64 {
    name.bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| mix(h ^ u64::from(b)))
}

/// Writes `len` bytes of the noise stream `seed` to `out`.
fn noise(out: &mut impl Write, seed: u64, len: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        out.write_all(&buf[..n]).expect("write scenario");
        left -= n as u64;
    }
}

/// One scenario at one size: its files (base first) and what an ideal store
/// would hold.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub kind: Kind,
    pub files: Vec<PathBuf>,
    /// Bytes of all the files.
    pub total: u64,
    /// The store size at tensor granularity (see the module docs).
    pub ideal: u64,
}

/// Writes (or finds cached under `dir`) the files of `kind` with a base of
/// about `mib` MiB.
pub fn generate(kind: Kind, mib: u64, dir: &Path) -> Scenario {
    generate_first(kind, mib, dir, VARIANTS)
}

/// As [`generate`], but only the base and variants `1..=variants` (the same
/// files, cached in the same place): for benches that need a variant or two.
pub fn generate_first(kind: Kind, mib: u64, dir: &Path, variants: u64) -> Scenario {
    let dir = dir.join(kind.name());
    fs::create_dir_all(&dir).expect("scenario dir");
    let mut files = Vec::new();
    let (mut total, mut ideal) = (0, 0);
    for v in 0..=variants.min(VARIANTS) {
        let (path, len, new) = if kind.is_safetensors() {
            safetensors_file(kind, mib, v, &dir)
        } else {
            opaque_file(kind, mib, v, &dir)
        };
        total += len;
        ideal += if v == 0 { len } else { new };
        files.push(path);
    }
    Scenario {
        kind,
        files,
        total,
        ideal,
    }
}

/// Writes `path` with `write` unless it exists with length `len`; through a
/// temp file, so an interrupted run leaves no short file under the name.
fn cached(path: &Path, len: u64, write: impl FnOnce(&mut File)) {
    if fs::metadata(path).is_ok_and(|m| m.len() == len) {
        return;
    }
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).expect("create scenario file");
    write(&mut f);
    let got = f.metadata().expect("stat").len();
    assert_eq!(
        got,
        len,
        "{} written at {got} bytes, expected {len}",
        path.display()
    );
    fs::rename(&tmp, path).expect("publish scenario file");
}

/// Variant `v` (0: the base) of a safetensors scenario: its path, length, and
/// the bytes new in it at tensor granularity (header and changed tensors).
fn safetensors_file(kind: Kind, mib: u64, v: u64, dir: &Path) -> (PathBuf, u64, u64) {
    let shape = Shape::for_mib(mib);
    let extra = if kind == Kind::VocabExtended {
        ROWS_PER_VARIANT * v
    } else {
        0
    };
    let tensors = shape.tensors(extra);
    let mut header = serde_json::Map::new();
    let mut meta = serde_json::Map::new();
    meta.insert("format".into(), "pt".into());
    if v > 0 {
        meta.insert(
            "fine_tune".into(),
            format!("{} variant {v}", kind.name()).into(),
        );
        meta.insert("steps".into(), (1000 * v * v).to_string().into());
    }
    header.insert("__metadata__".into(), meta.into());
    let mut at = 0u64;
    let mut new = 0u64;
    for (name, rows, cols) in &tensors {
        let len = rows * cols * 2;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": [rows, cols], "data_offsets": [at, at + len]}),
        );
        let grown = extra > 0 && *rows == shape.vocab + extra;
        if v > 0 && (changed(kind, &shape, name) || grown) {
            new += len;
        }
        at += len;
    }
    let mut json = serde_json::to_vec(&header).expect("header");
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let header_len = 8 + json.len() as u64;
    let len = header_len + at;
    let path = dir.join(format!("{v}.safetensors"));
    cached(&path, len, |f| {
        let mut out = BufWriter::with_capacity(4 << 20, f);
        out.write_all(&(json.len() as u64).to_le_bytes())
            .expect("write");
        out.write_all(&json).expect("write");
        for (name, rows, cols) in &tensors {
            let base_seed = name_seed(name);
            if v > 0 && changed(kind, &shape, name) {
                noise(
                    &mut out,
                    mix(base_seed ^ mix(kind.seed() << 8 | v)),
                    rows * cols * 2,
                );
            } else if *rows == shape.vocab + extra && extra > 0 {
                noise(&mut out, base_seed, shape.vocab * cols * 2);
                noise(
                    &mut out,
                    mix(base_seed ^ mix(kind.seed() << 8 | v)),
                    extra * cols * 2,
                );
            } else {
                noise(&mut out, base_seed, rows * cols * 2);
            }
        }
        out.flush().expect("flush");
    });
    (path, len, header_len + new)
}

/// Variant `v` (0: the base) of an opaque scenario: its path, length and the
/// bytes rewritten in it.
fn opaque_file(kind: Kind, mib: u64, v: u64, dir: &Path) -> (PathBuf, u64, u64) {
    let len = mib << 20;
    let mut rng = fastrand::Rng::with_seed(mix(kind.seed() << 8 | v));
    let blocks = len / 4096;
    // (offset, length) of each rewrite.
    let rewrites: Vec<(u64, u64)> = match (v, kind) {
        (0, _) => vec![],
        (_, Kind::OpaqueRewrite) => {
            let run = len / 20;
            vec![(rng.u64(0..=len - run), run)]
        }
        _ => {
            let mut picked: Vec<u64> = (0..blocks).collect();
            rng.shuffle(&mut picked);
            picked.truncate((blocks / 100).max(1) as usize);
            picked.sort_unstable();
            picked.into_iter().map(|b| (b * 4096, 4096)).collect()
        }
    };
    let path = dir.join(format!("{v}.bin"));
    cached(&path, len, |f| {
        let mut out = BufWriter::with_capacity(4 << 20, &mut *f);
        noise(&mut out, 0x0bad_cafe, len);
        out.flush().expect("flush");
        drop(out);
        for (i, &(at, n)) in rewrites.iter().enumerate() {
            f.seek(SeekFrom::Start(at)).expect("seek");
            noise(f, mix(kind.seed() << 40 | v << 32 | i as u64), n);
        }
    });
    (path, len, rewrites.iter().map(|r| r.1).sum())
}
