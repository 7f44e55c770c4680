//! Reading the F32 tensors of a safetensors file: an 8-byte little-endian header length, a
//! JSON header naming each tensor's dtype, shape and byte range, then the raw data.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// The tensors of one file, by name.
#[derive(Debug)]
pub(crate) struct Tensors {
    bytes: Vec<u8>,
    data_start: usize,
    entries: HashMap<String, Entry>,
}

impl Tensors {
    pub(crate) fn parse(bytes: Vec<u8>) -> Result<Self, String> {
        let len_bytes: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or("the file is shorter than a safetensors header")?;
        let header_len = usize::try_from(u64::from_le_bytes(len_bytes))
            .map_err(|_| "the header length does not fit")?;
        let data_start = 8usize
            .checked_add(header_len)
            .filter(|e| *e <= bytes.len())
            .ok_or("the header runs past the end of the file")?;
        let raw: HashMap<String, serde_json::Value> = serde_json::from_slice(&bytes[8..data_start])
            .map_err(|e| format!("the header is not JSON: {e}"))?;
        let mut entries = HashMap::new();
        for (name, v) in raw {
            if name == "__metadata__" {
                continue;
            }
            let e: Entry = serde_json::from_value(v).map_err(|e| format!("tensor {name}: {e}"))?;
            entries.insert(name, e);
        }
        Ok(Self {
            bytes,
            data_start,
            entries,
        })
    }

    /// The tensor `name` as f32, checked to have `shape`.
    pub(crate) fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| format!("tensor {name} is missing"))?;
        if e.dtype != "F32" {
            return Err(format!("tensor {name} is {}, not F32", e.dtype));
        }
        if e.shape != shape {
            return Err(format!(
                "tensor {name} has shape {:?}, not {shape:?}",
                e.shape
            ));
        }
        let [start, end] = e.data_offsets;
        let n: usize = shape.iter().product();
        let data = self
            .bytes
            .get(self.data_start + start..self.data_start + end)
            .filter(|d| d.len() == n * 4)
            .ok_or_else(|| format!("tensor {name}: its byte range does not fit the file"))?;
        Ok(data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}
