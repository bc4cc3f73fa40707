#![allow(dead_code)] // Each example uses part of it.

//! A minimal safetensors writer and reader for `F32` tensors, shared by the
//! examples (`#[path]`-included; not an example itself).
//!
//! The format: an 8-byte little-endian header length `N`, `N` bytes of JSON
//! (`{"name":{"dtype":"F32","shape":[…],"data_offsets":[begin,end]},…,
//! "__metadata__":{…}}`, padded with spaces to a multiple of 8), then the raw
//! little-endian tensor data, offsets relative to the end of the header.

use std::collections::BTreeMap;

/// Named tensors: name → (shape, values).
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Encodes named `F32` tensors (name → (shape, values)) with string metadata.
pub fn encode(tensors: &Tensors, metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, (shape, values)) in tensors {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "{name}");
        let begin = data.len();
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [begin, data.len()]}),
        );
    }
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::json!(metadata));
    }
    let mut json = serde_json::to_vec(&header).expect("JSON of strings and numbers");
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + data.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&data);
    out
}

/// Decodes the `F32` tensors of a safetensors file: name → (shape, values).
pub fn decode(bytes: &[u8]) -> Result<Tensors, String> {
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or("shorter than the 8-byte header length")?;
    let n = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|e| e.to_string())?;
    let header = bytes.get(8..8 + n).ok_or("header runs past the end")?;
    let data = &bytes[8 + n..];
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| format!("header: {e}"))?;
    let mut out = BTreeMap::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        if info["dtype"] != "F32" {
            return Err(format!("{name}: only F32 is supported"));
        }
        let shape: Vec<usize> = serde_json::from_value(info["shape"].clone())
            .map_err(|e| format!("{name}: shape: {e}"))?;
        let [begin, end]: [usize; 2] = serde_json::from_value(info["data_offsets"].clone())
            .map_err(|e| format!("{name}: data_offsets: {e}"))?;
        let raw = data
            .get(begin..end)
            .ok_or(format!("{name}: data out of range"))?;
        if raw.len() != 4 * shape.iter().product::<usize>() {
            return Err(format!("{name}: data length does not match the shape"));
        }
        let values = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, (shape, values));
    }
    Ok(out)
}

/// A logistic-regression model: `p = sigmoid(weight · x + bias)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Logistic {
    /// One weight per feature.
    pub weight: Vec<f32>,
    /// The intercept.
    pub bias: f32,
}

impl Logistic {
    /// The tensors `weight` (shape `[features]`) and `bias` (shape `[1]`).
    pub fn to_safetensors(&self, metadata: &BTreeMap<String, String>) -> Vec<u8> {
        let tensors = BTreeMap::from([
            (
                "weight".to_owned(),
                (vec![self.weight.len()], self.weight.clone()),
            ),
            ("bias".to_owned(), (vec![1], vec![self.bias])),
        ]);
        encode(&tensors, metadata)
    }

    /// Reads the tensors written by [`to_safetensors`](Self::to_safetensors).
    pub fn from_safetensors(bytes: &[u8]) -> Result<Logistic, String> {
        let mut t = decode(bytes)?;
        let (_, weight) = t.remove("weight").ok_or("no 'weight' tensor")?;
        let (_, bias) = t.remove("bias").ok_or("no 'bias' tensor")?;
        let bias = *bias.first().ok_or("empty 'bias'")?;
        Ok(Logistic { weight, bias })
    }

    /// The probability of the positive class for features `x`.
    pub fn predict(&self, x: &[f32]) -> f32 {
        let z: f32 = self.weight.iter().zip(x).map(|(w, x)| w * x).sum::<f32>() + self.bias;
        1.0 / (1.0 + (-z).exp())
    }
}
