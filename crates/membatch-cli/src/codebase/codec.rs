//! Vectors as bytes: little-endian `f32`s, as the cache stores them and
//! `embeddings.safetensors` holds its rows.

/// `v` as little-endian bytes.
pub(super) fn to_le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The `f32`s of little-endian bytes (a trailing partial value is dropped).
pub(super) fn from_le_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_bytes() {
        let v = [0.0, -1.5, f32::MIN_POSITIVE, 3.25e10];
        let bytes = to_le_bytes(&v);
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[4..8], &(-1.5f32).to_le_bytes());
        assert_eq!(from_le_bytes(&bytes), v);
        assert_eq!(from_le_bytes(&bytes[..7]), [0.0]);
    }
}
