//! The safetensors header of one F32 matrix, for the tools that stream a
//! matrix's rows to disk (`membatch embed`, the codebase index).
//!
//! Written by hand because the `safetensors` crate serialises only tensors
//! held in memory, and the point of both tools is never to hold the whole
//! matrix.

/// The header of a safetensors file holding one F32 matrix `name` of
/// `rows` × `dimension` with `metadata`: its 8-byte length, then the JSON,
/// padded with spaces (which the format allows) to a multiple of 8, so the
/// data starts aligned, and to at least `min_len` bytes in all (the room a
/// file reserved for it before its rows were counted).
pub(crate) fn safetensors_header(
    name: &str,
    rows: u64,
    dimension: u64,
    metadata: &[(&str, &str)],
    min_len: usize,
) -> Vec<u8> {
    let metadata: serde_json::Map<String, serde_json::Value> = metadata
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).into()))
        .collect();
    let mut top = serde_json::Map::new();
    top.insert("__metadata__".into(), metadata.into());
    top.insert(
        name.into(),
        serde_json::json!({
            "dtype": "F32",
            "shape": [rows, dimension],
            "data_offsets": [0, rows.saturating_mul(dimension).saturating_mul(4)],
        }),
    );
    let mut json = serde_json::Value::Object(top).to_string().into_bytes();
    let len = (8 + json.len()).max(min_len).div_ceil(8) * 8;
    json.resize(len - 8, b' ');
    let mut header = ((len - 8) as u64).to_le_bytes().to_vec();
    header.extend_from_slice(&json);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_what_the_safetensors_crate_reads_and_pads_to_its_room() {
        let h = safetensors_header("m", 2, 3, &[("model", "x")], 0);
        assert_eq!(h.len() % 8, 0);
        let mut file = h.clone();
        file.extend(std::iter::repeat_n(0u8, 2 * 3 * 4));
        let t = safetensors::SafeTensors::deserialize(&file).unwrap();
        assert_eq!(t.tensor("m").unwrap().shape(), [2, 3]);
        let roomy = safetensors_header("m", 2, 3, &[], 200);
        assert_eq!(roomy.len(), 200);
        let mut file = roomy;
        file.extend(std::iter::repeat_n(0u8, 24));
        assert!(safetensors::SafeTensors::deserialize(&file).is_ok());
    }
}
