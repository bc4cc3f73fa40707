//! One chunk of versions in a format 3 checkpoint.
//!
//! Versions registered by one pipeline repeat most of their provenance: the same
//! environment, datasets, code and hyperparameters, version after version. A chunk
//! stores each distinct value of those four fields once, in a table, and each
//! version refers to its values by index:
//!
//! ```text
//! {"code":[…],"datasets":[…],"hyperparameters":[…],"environment":[…],
//!  "versions":[[c,d,h,e,{version with an empty provenance but its parents}],…]}
//! ```
//!
//! Decoding a table entry once and cloning it for each version that uses it is
//! about ten times cheaper than decoding its JSON again. Hyperparameters and
//! environments are shared ([`Arc`]) by every version that uses them, so they
//! are held once in memory too; for code and datasets the last version that
//! uses an entry takes it, so values that never repeat cost what they cost
//! inline, plus one index.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::name::ModelName;
use super::record::{CodeRef, DatasetRef, Environment, Hyperparameters, Provenance, VersionRecord};

/// Distinct values of one field, by their JSON.
struct Table {
    index: HashMap<Vec<u8>, u32>,
    json: Vec<u8>,
}

impl Table {
    fn new() -> Self {
        Table {
            index: HashMap::new(),
            json: vec![b'['],
        }
    }

    /// The index of `value` in the table, adding it if it is new.
    fn intern(&mut self, value: &impl Serialize) -> u32 {
        // Invariant: the provenance fields are plain data with string map keys,
        // serialized into memory: this cannot fail. Empty bytes would make every
        // failing value share one table entry, and the chunk undecodable.
        let bytes = serde_json::to_vec(value).expect("a provenance field always serializes");
        let next = self.index.len() as u32;
        *self.index.entry(bytes).or_insert_with_key(|bytes| {
            if next > 0 {
                self.json.push(b',');
            }
            self.json.extend_from_slice(bytes);
            next
        })
    }

    fn finish(mut self) -> Vec<u8> {
        self.json.push(b']');
        self.json
    }
}

/// Encodes `versions` as one chunk.
pub(crate) fn encode(versions: &[Arc<VersionRecord>]) -> Vec<u8> {
    let (mut code, mut datasets, mut hyper, mut env) =
        (Table::new(), Table::new(), Table::new(), Table::new());
    let mut rows = vec![b'['];
    for (i, v) in versions.iter().enumerate() {
        let p = &v.provenance;
        let refs = [
            code.intern(&p.code),
            datasets.intern(&p.datasets),
            hyper.intern(&p.hyperparameters),
            env.intern(&p.environment),
        ];
        if i > 0 {
            rows.push(b',');
        }
        rows.push(b'[');
        for r in refs {
            rows.extend_from_slice(r.to_string().as_bytes());
            rows.push(b',');
        }
        let stub = VersionRecord {
            model: ModelName::unset(),
            provenance: Provenance {
                parents: p.parents.clone(),
                ..Provenance::default()
            },
            ..VersionRecord::clone(v)
        };
        // Invariant: as for the tables above; a version written as nothing would
        // drop it from the checkpoint.
        serde_json::to_writer(&mut rows, &stub).expect("a version record always serializes");
        rows.push(b']');
    }
    rows.push(b']');
    let mut out = Vec::with_capacity(rows.len() + 256);
    for (key, table) in [
        ("code", code),
        ("datasets", datasets),
        ("hyperparameters", hyper),
        ("environment", env),
    ] {
        out.extend_from_slice(if key == "code" { b"{\"" } else { b",\"" });
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(&table.finish());
    }
    out.extend_from_slice(b",\"versions\":");
    out.extend_from_slice(&rows);
    out.push(b'}');
    out
}

/// Decodes a chunk [`encode`] wrote. An error says what is wrong, for the
/// caller's [`Error::Corrupt`](crate::Error::Corrupt).
pub(crate) fn decode(json: &[u8]) -> Result<Vec<Arc<VersionRecord>>, String> {
    #[derive(Deserialize)]
    struct Chunk {
        code: Vec<Option<CodeRef>>,
        datasets: Vec<Vec<DatasetRef>>,
        hyperparameters: Vec<Arc<Hyperparameters>>,
        environment: Vec<Arc<Environment>>,
        versions: Vec<(u32, u32, u32, u32, VersionRecord)>,
    }
    let mut c: Chunk = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let missing = |i: u32| format!("index {i} is not in the chunk's table");
    // How many versions use each code and datasets entry: the last one takes it,
    // the others clone it, so a value that does not repeat is never copied.
    // (Hyperparameters and environments are shared, never copied.)
    let mut uses = [vec![0u32; c.code.len()], vec![0u32; c.datasets.len()]];
    for (code, datasets, hyper, env, _) in &c.versions {
        for (table, i) in uses.iter_mut().zip([code, datasets]) {
            *table.get_mut(*i as usize).ok_or_else(|| missing(*i))? += 1;
        }
        for (len, i) in [(c.hyperparameters.len(), hyper), (c.environment.len(), env)] {
            if *i as usize >= len {
                return Err(missing(*i));
            }
        }
    }
    fn take<T: Clone + Default>(table: &mut [T], uses: &mut [u32], i: u32) -> T {
        // In range: every index was checked above.
        let i = i as usize;
        uses[i] -= 1;
        if uses[i] == 0 {
            std::mem::take(&mut table[i])
        } else {
            table[i].clone()
        }
    }
    let [u_code, u_datasets] = &mut uses;
    let mut out = Vec::with_capacity(c.versions.len());
    for (code, datasets, hyper, env, mut v) in c.versions {
        let p = &mut v.provenance;
        if p.code.is_some()
            || !p.datasets.is_empty()
            || !p.hyperparameters.is_empty()
            || *p.environment != Environment::default()
        {
            return Err(format!(
                "version {} carries its provenance inline",
                v.number
            ));
        }
        p.code = take(&mut c.code, u_code, code);
        p.datasets = take(&mut c.datasets, u_datasets, datasets);
        // In range: every index was checked above.
        p.hyperparameters = Arc::clone(&c.hyperparameters[hyper as usize]);
        p.environment = Arc::clone(&c.environment[env as usize]);
        out.push(Arc::new(v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value whose serialization fails: impossible for the provenance fields,
    /// but if it happened the table must not record it as empty bytes (which
    /// every other failing value would then share).
    struct Unserializable;
    impl Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no"))
        }
    }

    #[test]
    #[should_panic(expected = "always serializes")]
    fn a_value_that_does_not_serialize_is_never_interned_as_nothing() {
        Table::new().intern(&Unserializable);
    }
}
