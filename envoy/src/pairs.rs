//! proxy-wasm's serialized header maps, as bytes: the pair count, each pair's two lengths (u32
//! little endian), then each name and value followed by a NUL.
//!
//! Pure functions with no host call, so they are tested natively (`cargo test -p
//! claveunica-gate-envoy`). The reader takes the host's bytes as they are: names and values
//! need not be UTF-8 (a client can send any byte Envoy lets through), and bytes that do not add
//! up are refused, as the host's own reader (`PairsUtil::toPairs`) refuses them, never a panic,
//! which would trap the VM.

/// A header's name and value, as bytes.
pub type Pair = (Vec<u8>, Vec<u8>);

/// The encoding of `pairs`, for the host calls that take a map (a local response's headers).
pub fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::with_capacity(4 + pairs.iter().map(|(n, v)| 10 + n.len() + v.len()).sum::<usize>());
    out.extend_from_slice(&len(pairs.len()));
    for (n, v) in pairs {
        out.extend_from_slice(&len(n.len()));
        out.extend_from_slice(&len(v.len()));
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Reads the encoding [`serialize`] writes; `None` when the bytes do not add up: a count or a
/// length beyond the buffer, a field not followed by its NUL, or bytes left over. No bytes at
/// all is the empty map (what Envoy hands over for one).
pub fn deserialize(bytes: &[u8]) -> Option<Vec<Pair>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let (count, rest) = split_len(bytes)?;
    // The lengths table must fit before anything is allocated for the pairs, so a count beyond
    // the buffer is a refusal, not an allocation.
    let (mut table, mut fields) = rest.split_at_checked(count.checked_mul(8)?)?;
    let mut map = Vec::with_capacity(count);
    for _ in 0..count {
        let (name_len, after) = split_len(table)?;
        let (value_len, after) = split_len(after)?;
        table = after;
        let (name, after) = split_field(fields, name_len)?;
        let (value, after) = split_field(after, value_len)?;
        fields = after;
        map.push((name.to_vec(), value.to_vec()));
    }
    fields.is_empty().then_some(map)
}

/// A u32 little-endian length and the bytes after it.
fn split_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((usize::try_from(u32::from_le_bytes(*head)).ok()?, rest))
}

/// A field of `len` bytes, its NUL, and the bytes after them.
fn split_field(bytes: &[u8], len: usize) -> Option<(&[u8], &[u8])> {
    let (field, rest) = bytes.split_at_checked(len)?;
    match rest.split_first() {
        Some((0, rest)) => Some((field, rest)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    // Also under Node, compiled to wasm32 as the filter is (32-bit lengths and counts).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// The encoding of byte pairs, as the host writes it (`serialize` only takes text).
    fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let len = |n: usize| u32::try_from(n).unwrap().to_le_bytes();
        let mut out = len(pairs.len()).to_vec();
        for (n, v) in pairs {
            out.extend_from_slice(&len(n.len()));
            out.extend_from_slice(&len(v.len()));
        }
        for (n, v) in pairs {
            out.extend_from_slice(n);
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    fn owned(pairs: &[(&[u8], &[u8])]) -> Vec<Pair> {
        pairs.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
    }

    /// Headers a client can send through Envoy: bytes that are not UTF-8 in a name and a value,
    /// an empty value, a repeated name (order kept), a NUL inside a value (the lengths, not the
    /// NULs, delimit a field).
    const AWKWARD: &[(&[u8], &[u8])] = &[
        (b":path", b"/private"),
        (b"x-latin1", b"Mar\xeda"),
        (b"x-\xff\xfe", b"\xc3\x28"),
        (b"x-empty", b""),
        (b"cookie", b"a=1"),
        (b"cookie", b"b=2"),
        (b"x-nul", b"before\0after"),
    ];

    #[test]
    fn empty_maps() {
        assert_eq!(deserialize(b""), Some(vec![]), "no bytes: Envoy's empty map");
        assert_eq!(deserialize(&0u32.to_le_bytes()), Some(vec![]), "a count of 0");
        assert_eq!(deserialize(&serialize(&[])), Some(vec![]));
    }

    #[test]
    fn well_formed_maps_are_read_byte_for_byte() {
        assert_eq!(deserialize(&encode(AWKWARD)), Some(owned(AWKWARD)));
        let text = [(":status", "302"), ("location", "https://example.cl/?a=1&b=ñ"), ("set-cookie", "")];
        let expected: Vec<Pair> = text.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect();
        assert_eq!(deserialize(&serialize(&text)), Some(expected), "what serialize writes reads back");
        assert_eq!(
            serialize(&text),
            encode(&[(b":status", b"302"), (b"location", text[1].1.as_bytes()), (b"set-cookie", b"")])
        );
    }

    #[test]
    fn every_truncation_is_refused() {
        let good = encode(AWKWARD);
        // An empty buffer is the empty map (above); every other strict prefix is cut somewhere.
        for len in 1..good.len() {
            assert_eq!(deserialize(&good[..len]), None, "cut to {len} of {} bytes", good.len());
        }
    }

    #[test]
    fn maps_that_do_not_add_up_are_refused() {
        let one = encode(&[(b"a", b"b")]);
        let with = |at: usize, bytes: &[u8]| {
            let mut m = one.clone();
            m[at..at + bytes.len()].copy_from_slice(bytes);
            m
        };
        let cases: &[(&str, Vec<u8>)] = &[
            ("fewer than 4 bytes", vec![1, 0, 0]),
            ("a count with no lengths", 1u32.to_le_bytes().to_vec()),
            ("a count larger than the buffer", with(0, &2u32.to_le_bytes())),
            ("the largest count", with(0, &u32::MAX.to_le_bytes())),
            ("a name longer than the buffer", with(4, &100u32.to_le_bytes())),
            ("the largest name length", with(4, &u32::MAX.to_le_bytes())),
            ("a value longer than the buffer", with(8, &3u32.to_le_bytes())),
            ("the largest value length", with(8, &u32::MAX.to_le_bytes())),
            ("a name without its NUL", with(13, b"x")),
            ("a value without its NUL", with(15, b"x")),
            ("lengths that skip a NUL", with(4, &2u32.to_le_bytes())),
            ("a byte left over", [one.as_slice(), b"\0"].concat()),
            ("a second map after the first", [one.as_slice(), one.as_slice()].concat()),
        ];
        assert_eq!(deserialize(&one), Some(owned(&[(b"a", b"b")])), "the map the cases break");
        for (what, bytes) in cases {
            assert_eq!(deserialize(bytes), None, "{what}: {bytes:?}");
        }
    }

    #[test]
    fn no_byte_changed_anywhere_makes_it_panic() {
        let good = encode(AWKWARD);
        for at in 0..good.len() {
            for byte in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] = byte;
                // Refused or read; what matters is that it returns.
                let _ = deserialize(&bad);
            }
        }
    }
}
