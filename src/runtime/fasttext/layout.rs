//! Checks a fastText `.bin`/`.ftz` file's layout before the `fasttext` crate reads it.
//!
//! The crate trusts the counts a file declares and allocates for them up front
//! (`Vec::with_capacity(size)`, `vec![0.0; m * n]`): a header claiming 2^31 dictionary entries or
//! a 12.5e9-row matrix asks for ~137 GB or ~50 GB, and an allocation failure aborts the whole
//! process, which `catch_unwind` cannot stop. So every count here is checked against the bytes
//! the file really holds, walking the same structure fastText 0.9 writes (`FastText::saveModel`),
//! and against the counts the other sections declare, so that nothing read later (an id into a
//! matrix, a tree over the labels) can point outside what was loaded.
//!
//! The walk reads the bytes once and allocates nothing proportional to a declared count.

/// fastText's file-format magic number (`FASTTEXT_FILEFORMAT_MAGIC_INT32`).
const MAGIC: i32 = 793_712_314;
/// The newest file-format version fastText writes (0.9.x).
const VERSION: i32 = 12;
/// Centroids per product-quantizer subspace (`ProductQuantizer::ksub_`).
const KSUB: i64 = 256;
/// The smallest dictionary entry: an empty word's terminating NUL, its i64 count, its type byte.
const MIN_ENTRY: i64 = 1 + 8 + 1;
/// fastText's Huffman tree gives not-yet-built nodes this count; a label count (or their sum)
/// reaching it would make the tree refer to itself.
const TREE_SENTINEL: i64 = 1_000_000_000_000_000;
/// `args.loss` values (fastText's `loss_name` enum).
const LOSS_HS: i32 = 1;
const LOSS_OVA: i32 = 4;
/// `args.model` value of a supervised model (fastText's `model_name::sup`).
const MODEL_SUP: i32 = 3;

/// What the file declares, as far as loading and scoring depend on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layout {
    pub dim: i64,
    pub nwords: i64,
    pub nlabels: i64,
    pub quantised_input: bool,
    pub quantised_output: bool,
    /// Offsets of the input and output matrices' headers (their quantised flags).
    pub input_at: usize,
    pub output_at: usize,
}

/// A bounds-checked reader over the file's bytes that names what it was reading when they ran out.
struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    fn remaining(&self) -> i64 {
        (self.data.len() - self.pos) as i64
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.data.len() - self.pos {
            return Err(format!(
                "the file ends inside {what} (offset {}, {} bytes left, {n} needed)",
                self.pos,
                self.data.len() - self.pos
            ));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn i32(&mut self, what: &str) -> Result<i32, String> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes(
            b.try_into().expect("4 bytes: this is a bug"),
        ))
    }

    fn i64(&mut self, what: &str) -> Result<i64, String> {
        let b = self.take(8, what)?;
        Ok(i64::from_le_bytes(
            b.try_into().expect("8 bytes: this is a bug"),
        ))
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn bool(&mut self, what: &str) -> Result<bool, String> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!(
                "{what} is {v}, not 0 or 1 (offset {})",
                self.pos - 1
            )),
        }
    }

    /// Skips `count` items of `size` bytes, refusing a count the rest of the file cannot hold.
    fn skip(&mut self, count: i64, size: i64, what: &str) -> Result<(), String> {
        let bytes = count
            .checked_mul(size)
            .filter(|&b| b >= 0 && b <= self.remaining())
            .ok_or_else(|| {
                format!(
                    "{what} declares {count} x {size} bytes but only {} bytes are left in the file",
                    self.remaining()
                )
            })?;
        self.take(bytes as usize, what).map(|_| ())
    }
}

/// Walks the whole file; `Ok` means every section is where its header says, holds what it
/// declares, and the sections agree with one another.
pub(super) fn check(data: &[u8]) -> Result<Layout, String> {
    let mut r = Bytes { data, pos: 0 };
    let magic = r.i32("the magic number")?;
    if magic != MAGIC {
        return Err(format!(
            "not a fastText model file (magic number {magic}, expected {MAGIC})"
        ));
    }
    let version = r.i32("the version")?;
    if !(0..=VERSION).contains(&version) {
        return Err(format!(
            "file-format version {version} is not one fastText 0.9 reads (up to {VERSION})"
        ));
    }
    let args = Args::read(&mut r)?;
    let dict = Dict::read(&mut r, &args)?;

    let input_at = r.pos;
    let quantised_input = r.bool("the quantised-input flag")?;
    if quantised_input {
        let m = quant_matrix(&mut r, args.dim, "the input matrix")?;
        check_input_rows(m, &args, &dict)?;
    } else {
        if dict.pruneidx_size >= 0 {
            return Err(
                "the dictionary is pruned but the input matrix is not quantised \
                        (a model saved by an old fastText; retrain or quantise it again)"
                    .into(),
            );
        }
        let m = dense_matrix(&mut r, args.dim, "the input matrix")?;
        check_input_rows(m, &args, &dict)?;
    }
    let output_at = r.pos;
    let quantised_output = r.bool("the quantised-output flag")?;
    let rows = if quantised_input && quantised_output {
        quant_matrix(&mut r, args.dim, "the output matrix")?
    } else {
        dense_matrix(&mut r, args.dim, "the output matrix")?
    };
    if rows != dict.nlabels {
        return Err(format!(
            "the output matrix has {rows} rows but the dictionary has {} labels",
            dict.nlabels
        ));
    }
    if r.remaining() != 0 {
        return Err(format!(
            "{} bytes follow the output matrix (the file is longer than the model it holds)",
            r.remaining()
        ));
    }
    Ok(Layout {
        dim: args.dim,
        nwords: dict.nwords,
        nlabels: dict.nlabels,
        quantised_input,
        quantised_output: quantised_input && quantised_output,
        input_at,
        output_at,
    })
}

/// The parts of fastText's `Args` block (12 i32s, then an f64) that sizes depend on.
struct Args {
    dim: i64,
    loss: i32,
    bucket: i64,
    /// Whether words get hashed subword or word n-gram rows (`Dictionary::pushHash` is reached).
    hashes: bool,
}

impl Args {
    fn read(r: &mut Bytes<'_>) -> Result<Self, String> {
        let mut v = [0i32; 12];
        for (i, slot) in v.iter_mut().enumerate() {
            *slot = r.i32(&format!("the argument block (field {i})"))?;
        }
        r.take(8, "the argument block (t)")?;
        let [dim, _ws, _epoch, _min_count, _neg, word_ngrams, loss, model, bucket, _minn, maxn, _lr] =
            v;
        if dim <= 0 {
            return Err(format!("dim is {dim}; it must be positive"));
        }
        if !(LOSS_HS..=LOSS_OVA).contains(&loss) {
            return Err(format!("loss is {loss}, not one fastText knows (1 to 4)"));
        }
        if model != MODEL_SUP {
            return Err(format!(
                "model type is {model}, not a supervised classifier (3): word-vector models \
                 have no labels to serve"
            ));
        }
        if bucket < 0 {
            return Err(format!("bucket is {bucket}; it must not be negative"));
        }
        Ok(Self {
            dim: dim.into(),
            loss,
            bucket: bucket.into(),
            hashes: bucket > 0 && (maxn > 0 || word_ngrams > 1),
        })
    }
}

/// The dictionary's counts, after every entry has been walked.
struct Dict {
    nwords: i64,
    nlabels: i64,
    pruneidx_size: i64,
    /// The largest row a pruned n-gram is mapped to (`pruneidx` values), if any.
    max_pruned_row: Option<i64>,
}

impl Dict {
    fn read(r: &mut Bytes<'_>, args: &Args) -> Result<Self, String> {
        let size = i64::from(r.i32("the dictionary size")?);
        let nwords = i64::from(r.i32("the dictionary's word count")?);
        let nlabels = i64::from(r.i32("the dictionary's label count")?);
        r.i64("the dictionary's token count")?;
        let pruneidx_size = r.i64("the dictionary's pruned-index size")?;
        if size < 0 || nwords < 0 || nlabels < 0 || nwords + nlabels != size {
            return Err(format!(
                "the dictionary declares {size} entries, {nwords} words and {nlabels} labels; \
                 words and labels must add up to the entries"
            ));
        }
        if nlabels == 0 {
            return Err("the dictionary has no labels (is it a supervised model?)".into());
        }
        if size > r.remaining() / MIN_ENTRY {
            return Err(format!(
                "the dictionary declares {size} entries but the {} bytes left in the file hold \
                 at most {}",
                r.remaining(),
                r.remaining() / MIN_ENTRY
            ));
        }
        let mut label_total: i64 = 0;
        for i in 0..size {
            let start = r.pos;
            let len = r.data[start..]
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| format!("dictionary entry {i} has no end (offset {start})"))?;
            let word = r.take(len + 1, "a dictionary word")?;
            if std::str::from_utf8(&word[..len]).is_err() {
                return Err(format!(
                    "dictionary entry {i} is not UTF-8 (offset {start})"
                ));
            }
            let count = r.i64("a dictionary count")?;
            let kind = r.u8("a dictionary entry type")?;
            let expected = u8::from(i >= nwords);
            if kind != expected {
                return Err(format!(
                    "dictionary entry {i} has type {kind}; entries 0..{nwords} must be words (0) \
                     and the rest labels (1)"
                ));
            }
            if kind == 1 {
                if count < 0 {
                    return Err(format!("label entry {i} has a negative count {count}"));
                }
                label_total = label_total.saturating_add(count);
            }
        }
        if args.loss == LOSS_HS && label_total >= TREE_SENTINEL {
            return Err(format!(
                "the label counts add up to {label_total}, too many for fastText's \
                 hierarchical-softmax tree (below {TREE_SENTINEL})"
            ));
        }
        let mut max_pruned_row = None;
        if pruneidx_size > 0 {
            if pruneidx_size > r.remaining() / 8 {
                return Err(format!(
                    "the pruned index declares {pruneidx_size} pairs but only {} bytes are left",
                    r.remaining()
                ));
            }
            for _ in 0..pruneidx_size {
                r.i32("a pruned-index key")?;
                let row = i64::from(r.i32("a pruned-index row")?);
                if row < 0 {
                    return Err(format!("the pruned index maps an n-gram to row {row}"));
                }
                max_pruned_row = max_pruned_row.max(Some(row));
            }
        }
        Ok(Self {
            nwords,
            nlabels,
            pruneidx_size,
            max_pruned_row,
        })
    }
}

/// The input matrix must have a row for every id the dictionary can produce: each word, and each
/// hashed n-gram bucket (or, once pruned, each row the pruned index maps to).
fn check_input_rows(rows: i64, args: &Args, dict: &Dict) -> Result<(), String> {
    let needed = if !args.hashes || dict.pruneidx_size == 0 {
        dict.nwords
    } else if dict.pruneidx_size > 0 {
        dict.nwords + dict.max_pruned_row.map_or(0, |r| r + 1)
    } else {
        dict.nwords + args.bucket
    };
    if rows < needed {
        return Err(format!(
            "the input matrix has {rows} rows but the dictionary needs {needed} \
             ({} words and their n-gram buckets)",
            dict.nwords
        ));
    }
    Ok(())
}

/// fastText's `DenseMatrix`: i64 rows, i64 columns, then rows x columns f32s. Returns the rows.
fn dense_matrix(r: &mut Bytes<'_>, dim: i64, what: &str) -> Result<i64, String> {
    let m = r.i64(&format!("{what}'s row count"))?;
    let n = r.i64(&format!("{what}'s column count"))?;
    if m < 0 || n != dim {
        return Err(format!(
            "{what} is declared {m} x {n}; it must have dim = {dim} columns"
        ));
    }
    let cells = m
        .checked_mul(n)
        .ok_or_else(|| format!("{what} is declared {m} x {n}, more cells than can exist"))?;
    r.skip(cells, 4, &format!("{what} ({m} x {n} floats)"))?;
    Ok(m)
}

/// fastText's `QuantMatrix`: a norm flag, i64 rows and columns, the codes, a product quantizer,
/// and with the flag the norms' codes and their own quantizer. Returns the rows.
fn quant_matrix(r: &mut Bytes<'_>, dim: i64, what: &str) -> Result<i64, String> {
    let qnorm = r.bool(&format!("{what}'s norm flag"))?;
    let m = r.i64(&format!("{what}'s row count"))?;
    let n = r.i64(&format!("{what}'s column count"))?;
    let codesize = i64::from(r.i32(&format!("{what}'s code size"))?);
    if m < 0 || n != dim {
        return Err(format!(
            "{what} is declared {m} x {n}; it must have dim = {dim} columns"
        ));
    }
    r.skip(codesize, 1, &format!("{what}'s codes"))?;
    let nsubq = quantizer(r, n, &format!("{what}'s quantizer"))?;
    if m.checked_mul(nsubq) != Some(codesize) {
        return Err(format!(
            "{what} holds {codesize} codes, not rows {m} x subquantizers {nsubq}"
        ));
    }
    if qnorm {
        r.skip(m, 1, &format!("{what}'s norm codes"))?;
        quantizer(r, 1, &format!("{what}'s norm quantizer"))?;
    }
    Ok(m)
}

/// fastText's `ProductQuantizer` over vectors of `dim` floats: its four sizes, then dim x 256
/// centroids. The sizes must describe `dim` split into subvectors, or decoding a row would read
/// past its centroids. Returns the number of subquantizers.
fn quantizer(r: &mut Bytes<'_>, dim: i64, what: &str) -> Result<i64, String> {
    let qdim = i64::from(r.i32(&format!("{what}'s dimension"))?);
    let nsubq = i64::from(r.i32(&format!("{what}'s subquantizer count"))?);
    let dsub = i64::from(r.i32(&format!("{what}'s subvector size"))?);
    let lastdsub = i64::from(r.i32(&format!("{what}'s last subvector size"))?);
    let consistent = qdim == dim
        && dsub > 0
        && nsubq == (dim + dsub - 1) / dsub
        && lastdsub > 0
        && lastdsub <= dsub
        && (nsubq - 1) * dsub + lastdsub == dim;
    if !consistent {
        return Err(format!(
            "{what} is declared dim {qdim} in {nsubq} subvectors of {dsub} (last {lastdsub}), \
             which does not split vectors of {dim}"
        ));
    }
    r.skip(qdim, KSUB * 4, &format!("{what}'s centroids"))?;
    Ok(nsubq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fasttext")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    const FIXTURES: [&str; 7] = [
        "softmax.bin",
        "ova.bin",
        "hs.bin",
        "ngrams_subwords.bin",
        "quantized.ftz",
        "quantized_cutoff.ftz",
        "quantized_hs.ftz",
    ];

    #[test]
    fn every_fixture_model_passes() {
        for name in FIXTURES {
            let layout = check(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(layout.nlabels > 0 && layout.dim > 0, "{name}: {layout:?}");
            assert_eq!(layout.quantised_input, name.ends_with(".ftz"), "{name}");
        }
    }

    fn with_i32s(mut data: Vec<u8>, offset: usize, values: &[i32]) -> Vec<u8> {
        for (i, v) in values.iter().enumerate() {
            data[offset + 4 * i..offset + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        data
    }

    #[test]
    fn a_dictionary_larger_than_the_file_is_refused_before_reading_it() {
        // The defect that aborted the server: 2^31 - 1 entries declared at offset 64.
        let data = with_i32s(fixture("ova.bin"), 64, &[i32::MAX, i32::MAX - 1, 1]);
        let err = check(&data).unwrap_err();
        assert!(err.contains("declares 2147483647 entries"), "{err}");
    }

    #[test]
    fn an_input_matrix_larger_than_the_file_is_refused() {
        let data = fixture("ova.bin");
        let layout = check(&data).unwrap();
        let at = layout.input_at + 1;
        let mut bad = data.clone();
        bad[at..at + 8].copy_from_slice(&12_500_000_000i64.to_le_bytes());
        let err = check(&bad).unwrap_err();
        assert!(err.contains("the input matrix (12500000000 x"), "{err}");
        assert!(err.contains("bytes are left"), "{err}");
    }

    #[test]
    fn every_truncation_of_every_fixture_is_refused() {
        for name in FIXTURES {
            let data = fixture(name);
            for len in 0..data.len() {
                assert!(
                    check(&data[..len]).is_err(),
                    "{name} cut to {len} bytes passed"
                );
            }
        }
    }

    #[test]
    fn inconsistent_counts_are_refused() {
        let data = fixture("softmax.bin");
        // words + labels != entries
        let mut r = Bytes {
            data: &data,
            pos: 64,
        };
        let size = r.i32("").unwrap();
        let bad = with_i32s(data.clone(), 64, &[size, size, 1]);
        assert!(check(&bad).unwrap_err().contains("add up"));
        // no labels
        let bad = with_i32s(data.clone(), 64, &[size, size, 0]);
        assert!(check(&bad).is_err());
        // dim changed: the matrices no longer have dim columns
        let bad = with_i32s(data.clone(), 8, &[7]);
        assert!(check(&bad).unwrap_err().contains("dim = 7"));
        // a word-vector model
        let bad = with_i32s(data.clone(), 8 + 7 * 4, &[1]);
        assert!(check(&bad).unwrap_err().contains("supervised"));
        // trailing bytes
        let mut bad = data.clone();
        bad.push(0);
        assert!(check(&bad)
            .unwrap_err()
            .contains("follow the output matrix"));
    }

    /// Offsets of every header field a fixture has: the argument block, the dictionary's
    /// counts, and the matrices' headers (a quantised one's with its quantizer's sizes).
    fn header_offsets(data: &[u8]) -> Vec<usize> {
        let layout = check(data).unwrap();
        let mut at: Vec<usize> = (0..64 + 28).collect();
        for m in [layout.input_at, layout.output_at] {
            at.extend(m..(m + 1 + 1 + 16 + 4 + 16).min(data.len()));
        }
        at
    }

    /// Hostile values (too big, negative, zero, wrapping when multiplied) written over every
    /// header field of every fixture: each such file is refused, or else the crate loads it
    /// without panicking and it scores a row. (An allocation the file cannot back would abort
    /// this test's process, so passing means no such allocation is reachable.)
    #[test]
    fn hostile_header_values_are_refused_or_load_safely() {
        let values: [&[u8]; 7] = [
            &i32::MAX.to_le_bytes(),
            &i32::MIN.to_le_bytes(),
            &(-1i32).to_le_bytes(),
            &0i32.to_le_bytes(),
            &(1i32 << 24).to_le_bytes(),
            &(1i64 << 40).to_le_bytes(),
            &[2u8],
        ];
        for name in FIXTURES {
            let data = fixture(name);
            for offset in header_offsets(&data) {
                for v in values {
                    let mut bad = data.clone();
                    let end = (offset + v.len()).min(bad.len());
                    bad[offset..end].copy_from_slice(&v[..end - offset]);
                    if check(&bad).is_err() {
                        continue;
                    }
                    // The crate may still refuse it (its own checks); it must not panic.
                    if let Ok(model) = super::super::FastTextModel::from_bytes(&bad) {
                        let mut out = crate::runtime::Scores::default();
                        crate::runtime::Runtime::run(
                            &model,
                            &crate::runtime::Inputs::Text(&["steel chef knife"]),
                            &mut out,
                        )
                        .unwrap_or_else(|e| panic!("{name}: {v:?} at {offset}: {e}"));
                    }
                }
            }
        }
    }
}
