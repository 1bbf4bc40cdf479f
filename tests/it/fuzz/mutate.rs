//! Byte-level mutations of seed inputs, as a proptest strategy: the moves a coverage-guided
//! fuzzer makes (bit flips, interesting bytes and integers, inserts, deletes, truncation,
//! splicing two seeds), a few at a time on one seed.

use proptest::prelude::*;
use proptest::sample::Index;

/// One change to a byte string; positions are taken modulo its length when applied.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(Index, u8),
    Byte(Index, u8),
    /// A little-endian integer written over 4 or 8 bytes (counts and sizes in headers).
    Int(Index, u64, bool),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
    /// This range of another seed in place of this range.
    Splice(Index, Index, Index, usize),
    Duplicate(Index, usize),
}

/// Bytes the parsers give meaning to.
const BYTES: &[u8] = b"\0\x01\x7f\x80\xff\"\\{}[],:.-+eE0123456789 \n\t=#'\xc3\xa9\xed\xa0\x80";

/// Integers at the edges of every width.
const INTS: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_fffe,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x2e8_d4a5_1000, // 3.2e12: a matrix declared far larger than any file
    i64::MAX as u64,
    u64::MAX,
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<Index>(), prop::sample::select(BYTES)).prop_map(|(i, b)| Mutation::Byte(i, b)),
        (any::<Index>(), prop::sample::select(INTS), any::<bool>())
            .prop_map(|(i, v, wide)| Mutation::Int(i, v, wide)),
        (
            any::<Index>(),
            prop::collection::vec(prop::sample::select(BYTES), 1..8)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>(), any::<Index>(), 1usize..64)
            .prop_map(|(s, from, to, n)| Mutation::Splice(s, from, to, n)),
        (any::<Index>(), 1usize..32).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

/// Applies `m` to `data` (a splice reads from `seeds`).
fn apply(data: &mut Vec<u8>, m: &Mutation, seeds: &[Vec<u8>]) {
    let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len) };
    let len = data.len();
    match m {
        Mutation::Flip(i, bit) if len > 0 => data[at(i, len)] ^= 1 << bit,
        Mutation::Byte(i, b) if len > 0 => data[at(i, len)] = *b,
        Mutation::Int(i, v, wide) => {
            let bytes = v.to_le_bytes();
            let n = if *wide { 8 } else { 4 };
            let p = at(i, len.saturating_sub(n - 1).max(1));
            for (k, b) in bytes[..n].iter().enumerate() {
                if p + k < data.len() {
                    data[p + k] = *b;
                }
            }
        }
        Mutation::Insert(i, b) => {
            let p = at(i, len + 1);
            data.splice(p..p, b.iter().copied());
        }
        Mutation::Delete(i, n) if len > 0 => {
            let p = at(i, len);
            data.drain(p..(p + n).min(len));
        }
        Mutation::Truncate(i) => data.truncate(at(i, len + 1)),
        Mutation::Splice(s, from, to, n) => {
            let other = &seeds[s.index(seeds.len())];
            if other.is_empty() {
                return;
            }
            let f = from.index(other.len());
            let piece = &other[f..(f + n).min(other.len())];
            let p = at(to, len + 1);
            let end = (p + piece.len()).min(len);
            data.splice(p..end, piece.iter().copied());
        }
        Mutation::Duplicate(i, n) if len > 0 => {
            let p = at(i, len);
            let piece = data[p..(p + n).min(len)].to_vec();
            data.splice(p..p, piece);
        }
        _ => {}
    }
}

/// A seed of `seeds`, changed by up to `most` mutations (sometimes none: the seed itself).
pub fn mutated(seeds: Vec<Vec<u8>>, most: usize) -> impl Strategy<Value = Vec<u8>> {
    (any::<Index>(), prop::collection::vec(mutation(), 0..=most)).prop_map(move |(which, moves)| {
        let mut data = seeds[which.index(seeds.len())].clone();
        for m in &moves {
            apply(&mut data, m, &seeds);
        }
        data
    })
}

/// Like [`mutated`], but every change lands in the first `head` bytes (a model file's header
/// and the counts it declares), or truncates the file anywhere.
pub fn mutated_head(
    seeds: Vec<Vec<u8>>,
    head: usize,
    most: usize,
) -> impl Strategy<Value = Vec<u8>> {
    (
        any::<Index>(),
        prop::collection::vec((mutation(), any::<bool>()), 1..=most),
    )
        .prop_map(move |(which, moves)| {
            let mut data = seeds[which.index(seeds.len())].clone();
            for (m, truncate_anywhere) in &moves {
                if let (Mutation::Truncate(_), true) = (m, truncate_anywhere) {
                    apply(&mut data, m, &seeds);
                    continue;
                }
                let cut = head.min(data.len());
                let mut front = data[..cut].to_vec();
                apply(&mut front, m, &seeds);
                data.splice(..cut, front);
            }
            data
        })
}
