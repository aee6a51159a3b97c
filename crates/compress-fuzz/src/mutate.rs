//! Byte-level mutations: flips, range insertion/deletion/duplication, truncation, splicing,
//! and replacing integers found in the input (decimal text and little-endian u32/u64 fields)
//! with extremes.

use rand::rngs::StdRng;
use rand::Rng;

/// Largest input a mutation may produce (bytes); keeps every case fast.
pub const MAX_INPUT: usize = 256 * 1024;

/// Decimal texts that make parsers overflow, wrap or allocate.
pub const TEXT_EXTREMES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "255",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "99999999999999999999999999",
    "1e308",
    "-1e308",
    "1e999",
    "1e-320",
    "NaN",
    "inf",
    "-0",
    "0.5",
    "1.0",
];

/// Little-endian integers that make parsers overflow or allocate.
pub const INT_EXTREMES: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    1 << 40,
    1 << 62,
    1 << 63,
    u64::MAX,
    u64::MAX - 1,
    u64::MAX / 8,
];

/// Applies 1 to 4 random byte-level mutations to `data`; `pool` supplies splice partners.
pub fn mutate_bytes(rng: &mut StdRng, data: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let n = 1 + (rng.random::<u32>() % 8).trailing_zeros().min(3) as usize;
    for _ in 0..n {
        mutate_once(rng, data, pool);
    }
    data.truncate(MAX_INPUT);
}

fn pos(rng: &mut StdRng, len: usize) -> usize {
    rng.random_range(0..=len)
}

fn range(rng: &mut StdRng, len: usize) -> (usize, usize) {
    let a = pos(rng, len);
    let max = (len - a).min(if rng.random_bool(0.8) { 16 } else { 4096 });
    (a, a + rng.random_range(0..=max))
}

fn mutate_once(rng: &mut StdRng, data: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let len = data.len();
    match rng.random_range(0..10) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            data[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            data[i] = *[0u8, 0xff, 0x7f, 0x80, b'"', b'{', b'[', b'\\', b'\n', b'\0']
                .get(rng.random_range(0..10))
                .unwrap_or(&0);
        }
        2 => {
            let at = pos(rng, len);
            let n = rng.random_range(1..=32);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(at..at, bytes);
        }
        3 => {
            let (a, b) = range(rng, len);
            data.drain(a..b);
        }
        4 => {
            let (a, b) = range(rng, len);
            let chunk = data[a..b].to_vec();
            let at = pos(rng, len);
            let times = if rng.random_bool(0.9) { 1 } else { 64 };
            for _ in 0..times {
                data.splice(at..at, chunk.iter().copied());
            }
        }
        5 => data.truncate(pos(rng, len)),
        6 if !pool.is_empty() => {
            let other = &pool[rng.random_range(0..pool.len())];
            let cut = pos(rng, len);
            let from = pos(rng, other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        7 => replace_text_number(rng, data),
        _ => replace_le_int(rng, data),
    }
}

/// Spans of decimal-looking numbers (`-`, digits, `.`, `e`) in `data`.
fn text_numbers(data: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if data[i].is_ascii_digit() {
            let start = if i > 0 && data[i - 1] == b'-' {
                i - 1
            } else {
                i
            };
            let mut j = i;
            while j < data.len() && (data[j].is_ascii_digit() || b".eE+-".contains(&data[j])) {
                j += 1;
            }
            spans.push((start, j));
            i = j;
        } else {
            i += 1;
        }
    }
    spans
}

/// Replaces one decimal number in the text with an extreme.
pub fn replace_text_number(rng: &mut StdRng, data: &mut Vec<u8>) {
    let spans = text_numbers(data);
    if spans.is_empty() {
        return;
    }
    let (a, b) = spans[rng.random_range(0..spans.len())];
    let with = TEXT_EXTREMES[rng.random_range(0..TEXT_EXTREMES.len())];
    data.splice(a..b, with.bytes());
}

/// Overwrites a little-endian u32 or u64 with an extreme: preferably one that already looks
/// like a length or count (a nonzero value no larger than the input), else anywhere.
pub fn replace_le_int(rng: &mut StdRng, data: &mut [u8]) {
    let width = if rng.random_bool(0.5) { 8 } else { 4 };
    if data.len() < width {
        return;
    }
    let last = data.len() - width;
    let mut at = rng.random_range(0..=last);
    for _ in 0..64 {
        let probe = rng.random_range(0..=last);
        let mut b = [0u8; 8];
        b[..width].copy_from_slice(&data[probe..probe + width]);
        let v = u64::from_le_bytes(b);
        if v > 0 && v <= data.len() as u64 {
            at = probe;
            break;
        }
    }
    let v = match rng.random_range(0..5) {
        // A count just inside what the bytes left allow (entries of 1 to 64 bytes): passes a
        // "count × minimum size ≤ bytes left" check, so only the allocation shows it.
        4 => {
            let left = (data.len() - at) as u64;
            left / [1, 2, 4, 8, 13, 16, 32, 64][rng.random_range(0..8)]
        }
        0 => {
            let mut b = [0u8; 8];
            b[..width].copy_from_slice(&data[at..at + width]);
            u64::from_le_bytes(b)
                .wrapping_add(rng.random_range(0..8))
                .wrapping_sub(4)
        }
        _ => INT_EXTREMES[rng.random_range(0..INT_EXTREMES.len())],
    };
    data[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn finds_and_replaces_numbers() {
        assert_eq!(text_numbers(b"a 12, -3.5e2 x"), vec![(2, 4), (6, 12)]);
        let mut rng = StdRng::seed_from_u64(1);
        let mut d = b"{\"n\": 7}".to_vec();
        replace_text_number(&mut rng, &mut d);
        assert_ne!(d, b"{\"n\": 7}".to_vec());
    }

    #[test]
    fn mutations_stay_bounded_and_change_input() {
        let mut rng = StdRng::seed_from_u64(2);
        let seed = b"hello world 123".to_vec();
        let mut changed = 0;
        for _ in 0..200 {
            let mut d = seed.clone();
            mutate_bytes(&mut rng, &mut d, std::slice::from_ref(&seed));
            assert!(d.len() <= MAX_INPUT);
            changed += usize::from(d != seed);
        }
        assert!(changed > 150, "{changed}");
    }
}
