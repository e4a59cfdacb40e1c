//! What the scan knows of the raw data, as keyed hashes only: the values
//! of every personal column, and the quasi-identifier combinations that
//! occur exactly once in the raw rows. The key is random and lives only as
//! long as the scan, so the digests mean nothing outside it.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use foldhash::fast::FixedState;
use std::io::Read;
use std::path::PathBuf;

use super::filetype::FileType;
use super::records::{self, Visitor};
use super::report::RawSummary;
use crate::parallel;
use crate::plan::{Plan, Sensitivity};
use crate::rules::Hmac;

/// A keyed digest, cut to 16 bytes (a collision needs ~2^64 values).
pub type Digest = [u8; 16];

/// Hashes a [`Digest`] by its first 8 bytes: it is already uniform.
#[derive(Default, Clone, Copy)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(b);
    }
}

pub type DigestSet = HashSet<Digest, BuildHasherDefault<DigestHasher>>;
type DigestCounts = HashMap<Digest, u8, BuildHasherDefault<DigestHasher>>;

/// Raw values shorter than this (in characters) are not matched: a single
/// character is not a person.
pub const MIN_VALUE_CHARS: usize = 2;

/// One `--raw FORMAT:PLAN:FILE`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSpec {
    pub format: FileType,
    pub plan: PathBuf,
    pub file: PathBuf,
}

impl RawSpec {
    pub fn parse(s: &str) -> Result<RawSpec, String> {
        let mut parts = s.splitn(3, ':');
        let (Some(f), Some(plan), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("--raw {s:?}: expected FORMAT:PLAN:FILE"));
        };
        let format = match f {
            "csv" => FileType::Csv,
            "jsonl" => FileType::Jsonl,
            "parquet" => FileType::Parquet,
            _ => return Err(format!("--raw: format {f:?} is not csv, jsonl or parquet")),
        };
        Ok(RawSpec {
            format,
            plan: plan.into(),
            file: file.into(),
        })
    }
}

/// The keyed hash of one value, trimmed.
pub fn digest(hmac: &Hmac, value: &str) -> Digest {
    let mac = hmac.mac(value.trim().as_bytes());
    let mut d = [0u8; 16];
    d.copy_from_slice(&mac[..16]);
    d
}

/// The keyed hash of a combination of values (null is its own marker).
pub fn combination<'a>(
    hmac: &Hmac,
    buf: &mut Vec<u8>,
    values: impl Iterator<Item = Option<&'a str>>,
) -> Digest {
    buf.clear();
    for v in values {
        match v {
            Some(v) => buf.extend_from_slice(v.trim().as_bytes()),
            None => buf.push(0x1e),
        }
        buf.push(0x1f);
    }
    let mac = hmac.mac(buf);
    let mut d = [0u8; 16];
    d.copy_from_slice(&mac[..16]);
    d
}

/// The quasi-identifiers of one raw dataset and its unique combinations.
#[derive(Debug, Default)]
pub struct QuasiSet {
    pub names: Vec<String>,
    pub unique: DigestSet,
}

/// Bits in the prefilter per raw value (with [`PROBES`] bits set per
/// value in one 512-bit block, about 0.2 % false hits, against 6 % with
/// one bit a value).
const BITS_PER_VALUE: u64 = 16;
/// Bits set and tested per value, all in one cache line.
const PROBES: usize = 6;

/// One cache line of the prefilter.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Block([u64; 8]);

/// Blocks for `values` raw values: a power of two, at least 2 Ki blocks
/// (128 KiB), at most 4 Mi blocks (256 MiB).
fn filter_blocks(values: u64) -> usize {
    ((values.max(1) * BITS_PER_VALUE).div_ceil(512))
        .next_power_of_two()
        .clamp(1 << 11, 1 << 22) as usize
}

/// A blocked Bloom filter of fast keyed hashes (foldhash, seeded from
/// this scan's random key) of the raw personal values: a product value
/// that is not one is told apart with one fast hash and one cache line,
/// and only the rest pay for an HMAC and a look-up in the digest set.
/// Misses in the set are what a product value costs most, so
/// [`Matcher::prefetch`] asks for the line before it is needed.
#[derive(Debug)]
pub struct Prefilter {
    blocks: Vec<Block>,
    /// Hashes of the values while the raw data is read.
    hashes: Vec<u64>,
    state: FixedState,
}

impl Prefilter {
    fn new(seed: u64) -> Self {
        Prefilter {
            blocks: Vec::new(),
            hashes: Vec::new(),
            state: FixedState::with_seed(seed),
        }
    }

    /// Build the filter from the hashes gathered so far (every raw dataset).
    fn build(&mut self) {
        self.blocks = vec![Block::default(); filter_blocks(self.hashes.len() as u64)];
        // Kept: a later raw dataset rebuilds the filter with them all.
        let hashes = std::mem::take(&mut self.hashes);
        for &h in &hashes {
            let (b, bits) = self.spot(h);
            for bit in bits {
                self.blocks[b].0[bit / 64] |= 1 << (bit % 64);
            }
        }
        self.hashes = hashes;
    }

    /// The block of a hash and its bits in that block.
    fn spot(&self, h: u64) -> (usize, [usize; PROBES]) {
        let n = self.blocks.len().max(1);
        let block =
            (h.rotate_left(32).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (n - 1);
        let (a, step) = (h as u32, (h >> 32) as u32 | 1);
        let bits =
            std::array::from_fn(|i| (a.wrapping_add((i as u32).wrapping_mul(step)) & 511) as usize);
        (block, bits)
    }

    fn may_contain(&self, h: u64) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        let (b, bits) = self.spot(h);
        let block = &self.blocks[b].0;
        bits.iter()
            .all(|&bit| block[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// Ask the CPU for the line of `h` now, to test it later.
    fn prefetch(&self, h: u64) {
        if self.blocks.is_empty() {
            return;
        }
        let (b, _) = self.spot(h);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint; it never faults and the pointer
        // is into a live allocation.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(self.blocks[b].0.as_ptr().cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = b;
    }
}

/// The prefilter's hash of a value.
fn fast_hash(state: &FixedState, value: &str) -> u64 {
    state.hash_one(value)
}

/// Whether a character whose first byte is `lead` may be white space
/// (`char::is_whitespace`): exact in ASCII; beyond it only U+0085,
/// U+00A0, U+1680, U+2000 to U+205F and U+3000 are, which start with
/// these four bytes.
fn may_be_space(lead: u8) -> bool {
    matches!(lead, b' ' | b'\t'..=b'\r' | 0xC2 | 0xE1 | 0xE2 | 0xE3)
}

/// Long enough to be matched ([`MIN_VALUE_CHARS`]), trimmed.
fn matchable(value: &str) -> Option<&str> {
    // Most values have no space at either end: look at the first bytes
    // of the two end characters before paying for the general trim.
    let b = value.as_bytes();
    let last = b.iter().rev().take(4).find(|&&x| x & 0xC0 != 0x80);
    let v = match (b.first(), last) {
        (Some(&f), Some(&l)) if !may_be_space(f) && !may_be_space(l) => value,
        _ => value.trim(),
    };
    // A character is at most 4 bytes: longer values need no count.
    let long = v.len() > 4 * (MIN_VALUE_CHARS - 1);
    (long || v.chars().nth(MIN_VALUE_CHARS - 1).is_some()).then_some(v)
}

/// Everything learnt from the raw datasets.
#[derive(Debug)]
pub struct RawIndex {
    pub hmac: Hmac,
    pub personal: DigestSet,
    pub filter: Prefilter,
    pub quasi: Vec<QuasiSet>,
    /// Names of every `QuasiIdentifier` column of the raw plans.
    pub quasi_names: Vec<String>,
    pub summaries: Vec<RawSummary>,
}

/// 32 random bytes from the kernel.
pub fn random_key() -> Result<[u8; 32], String> {
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| format!("cannot read random bytes for the scan's key: {e}"))?;
    Ok(key)
}

impl RawIndex {
    pub fn new(key: &[u8]) -> Self {
        let hmac = Hmac::new(key);
        // The prefilter's seed: from the scan's key, so it is as secret.
        let mac = hmac.mac(b"cleanroom-scan prefilter seed");
        let seed = u64::from_le_bytes([
            mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], mac[6], mac[7],
        ]);
        RawIndex {
            hmac,
            personal: DigestSet::default(),
            filter: Prefilter::new(seed),
            quasi: Vec::new(),
            quasi_names: Vec::new(),
            summaries: Vec::new(),
        }
    }

    /// Read one raw dataset through its plan; `Err` when it cannot be read.
    pub fn add(&mut self, spec: &RawSpec) -> Result<(), String> {
        let text = std::fs::read_to_string(&spec.plan)
            .map_err(|e| format!("cannot read the plan {}: {e}", spec.plan.display()))?;
        let plan = Plan::from_json(&text)?;
        let mut loader = Loader::new(self, &plan, spec.format);
        loader
            .read_parallel(spec)
            .map_err(|e| format!("raw file {}: {e}", spec.file.display()))?;
        loader.finish()
    }
}

/// The digests of one raw row: its personal values (with their prefilter
/// hashes), and its combination.
type RowDigests = (Vec<(u64, Digest)>, Option<Digest>);

/// What the workers need to hash raw rows.
struct RowHasher<'a> {
    hmac: &'a Hmac,
    state: &'a FixedState,
    personal: &'a [usize],
    quasi: &'a [usize],
}

impl RowHasher<'_> {
    fn digests(&self, cells: &[Option<&str>]) -> RowDigests {
        let values = self
            .personal
            .iter()
            .filter_map(|&i| cells[i].and_then(matchable))
            .map(|v| (fast_hash(self.state, v), digest(self.hmac, v)))
            .collect();
        let combo = (!self.quasi.is_empty()).then(|| {
            let mut buf = Vec::new();
            combination(self.hmac, &mut buf, self.quasi.iter().map(|&i| cells[i]))
        });
        (values, combo)
    }
}

/// Feeds one raw file into the index.
struct Loader<'a> {
    index: &'a mut RawIndex,
    personal_names: Vec<String>,
    quasi_names: Vec<String>,
    personal_at: Vec<usize>,
    quasi_at: Vec<usize>,
    counts: DigestCounts,
    summary: RawSummary,
    missing: Option<String>,
}

impl<'a> Loader<'a> {
    /// The keyed hashes on every core.
    fn read_parallel(&mut self, spec: &RawSpec) -> Result<(), String> {
        let head = records::header(&spec.file, spec.format)?;
        self.header(&head.names);
        if let Some(m) = self.missing.take() {
            return Err(m);
        }
        let (personal, quasi) = (self.personal_at.clone(), self.quasi_at.clone());
        let (hmac, state) = (self.index.hmac.clone(), self.index.filter.state.clone());
        let hasher = RowHasher {
            hmac: &hmac,
            state: &state,
            personal: &personal,
            quasi: &quasi,
        };
        let prepare = |cells: &[Option<&str>], _: Option<&[u8]>| hasher.digests(cells);
        let threads = parallel::threads();
        records::read_parallel(
            &spec.file,
            spec.format,
            &head,
            threads,
            &prepare,
            &mut |item| match item {
                records::Item::Row(_, found) => self.add_row(found),
                records::Item::Malformed(..) => self.summary.malformed += 1,
            },
        )
    }

    fn add_row(&mut self, (values, combo): RowDigests) {
        self.summary.rows += 1;
        for (h, d) in values {
            self.index.filter.hashes.push(h);
            self.index.personal.insert(d);
        }
        if let Some(d) = combo {
            let n = self.counts.entry(d).or_insert(0);
            *n = n.saturating_add(1);
        }
    }

    fn new(index: &'a mut RawIndex, plan: &Plan, format: FileType) -> Self {
        let personal = |s: Sensitivity| s.is_personal() || s == Sensitivity::CreditCode;
        let names = |f: &dyn Fn(Sensitivity) -> bool| -> Vec<String> {
            plan.columns
                .iter()
                .filter(|c| f(c.sensitivity))
                .map(|c| c.name.clone())
                .collect()
        };
        let personal_names = names(&personal);
        let quasi_names = names(&|s| s == Sensitivity::QuasiIdentifier);
        Loader {
            index,
            summary: RawSummary {
                format: format.name().into(),
                personal_columns: personal_names.clone(),
                quasi_identifiers: quasi_names.clone(),
                ..RawSummary::default()
            },
            personal_names,
            quasi_names,
            personal_at: Vec::new(),
            quasi_at: Vec::new(),
            counts: DigestCounts::default(),
            missing: None,
        }
    }

    fn finish(self) -> Result<(), String> {
        if let Some(m) = self.missing {
            return Err(m);
        }
        self.index.filter.build();
        let mut summary = self.summary;
        if !self.quasi_names.is_empty() {
            let unique: DigestSet = self
                .counts
                .into_iter()
                .filter(|(_, n)| *n == 1)
                .map(|(d, _)| d)
                .collect();
            summary.unique_combinations = unique.len() as u64;
            for n in &self.quasi_names {
                if !self.index.quasi_names.contains(n) {
                    self.index.quasi_names.push(n.clone());
                }
            }
            self.index.quasi.push(QuasiSet {
                names: self.quasi_names,
                unique,
            });
        }
        summary.personal_values = self.index.personal.len() as u64;
        self.index.summaries.push(summary);
        Ok(())
    }
}

fn positions(header: &[String], wanted: &[String]) -> Result<Vec<usize>, String> {
    wanted
        .iter()
        .map(|w| {
            header
                .iter()
                .position(|h| h == w)
                .ok_or_else(|| format!("column {w:?} of the plan is not in the raw file"))
        })
        .collect()
}

impl Visitor for Loader<'_> {
    fn header(&mut self, names: &[String]) {
        let found = positions(names, &self.personal_names)
            .and_then(|p| positions(names, &self.quasi_names).map(|q| (p, q)));
        match found {
            Ok((p, q)) => (self.personal_at, self.quasi_at) = (p, q),
            Err(e) => self.missing = Some(e),
        }
    }

    fn row(&mut self, _: u64, _: u64, cells: &[Option<&str>]) {
        let (hmac, state) = (&self.index.hmac, &self.index.filter.state);
        let hasher = RowHasher {
            hmac,
            state,
            personal: &self.personal_at,
            quasi: &self.quasi_at,
        };
        let found = hasher.digests(cells);
        self.add_row(found);
    }

    fn malformed(&mut self, _: u64, _: String) {
        self.summary.malformed += 1;
    }
}

/// Where a product's columns meet the raw data.
pub struct Matcher<'a> {
    index: &'a RawIndex,
    /// For each raw dataset whose quasi-identifiers are all in the file,
    /// their positions in the file, in the raw plan's order.
    quasi: Vec<(usize, Vec<usize>)>,
}

impl<'a> Matcher<'a> {
    pub fn new(index: &'a RawIndex, header: &[String]) -> Self {
        let quasi = index
            .quasi
            .iter()
            .enumerate()
            .filter_map(|(i, q)| positions(header, &q.names).ok().map(|p| (i, p)))
            .collect();
        Matcher { index, quasi }
    }

    /// A value's prefilter hash; `None` when it cannot be a raw value
    /// (too short, or no raw value at all).
    fn hash(&self, value: &str) -> Option<u64> {
        let index = self.index;
        if index.personal.is_empty() {
            return None;
        }
        Some(fast_hash(&index.filter.state, matchable(value)?))
    }

    /// [`Matcher::hash`], and start fetching what the look-up will read.
    pub fn prefetch(&self, value: &str) -> Option<u64> {
        let h = self.hash(value)?;
        self.index.filter.prefetch(h);
        Some(h)
    }

    /// Whether `value`, whose hash is `h`, is a raw personal value.
    pub fn is_raw_hashed(&self, value: &str, h: u64) -> bool {
        let index = self.index;
        index.filter.may_contain(h) && index.personal.contains(&digest(&index.hmac, value))
    }

    /// A raw personal value.
    pub fn is_raw_value(&self, value: &str) -> bool {
        self.hash(value)
            .is_some_and(|h| self.is_raw_hashed(value, h))
    }

    /// The row holds a quasi-identifier combination unique in the raw data.
    pub fn unique_combination(&self, cells: &[Option<&str>]) -> bool {
        let mut buf = Vec::new();
        self.quasi.iter().any(|(i, at)| {
            let d = combination(&self.index.hmac, &mut buf, at.iter().map(|&c| cells[c]));
            self.index.quasi[*i].unique.contains(&d)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    const PLAN: &str = r#"{"columns":[
        {"name":"id","type":"string","sensitivity":"ResidentId","rule":{"kind":"hash"}},
        {"name":"name","type":"string","sensitivity":"Name","rule":{"kind":"redact"}},
        {"name":"age","type":"integer","sensitivity":"QuasiIdentifier","rule":{"kind":"generalize","bucket":10}},
        {"name":"zip","type":"string","sensitivity":"QuasiIdentifier","rule":{"kind":"keep"}},
        {"name":"income","type":"decimal","sensitivity":"None","rule":{"kind":"keep"}}]}"#;

    fn index(dir: &Path) -> RawIndex {
        let plan = write(dir, "plan.json", PLAN);
        let file = write(
            dir,
            "raw.csv",
            "id,name,age,zip,income\nA1,张三,34,100,5\nA2,李四,34,100,6\nA3,王五,71,200,7\n",
        );
        let mut idx = RawIndex::new(&random_key().expect("key"));
        let spec = format!("csv:{}:{}", plan.display(), file.display());
        idx.add(&RawSpec::parse(&spec).expect("spec")).expect("add");
        idx
    }

    #[test]
    fn raw_values_and_unique_combinations_are_found_by_digest_only() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let idx = index(dir.path());
        assert_eq!(idx.summaries[0].rows, 3);
        assert_eq!(idx.summaries[0].personal_values, 6);
        assert_eq!(idx.summaries[0].unique_combinations, 1);
        let header = vec!["zip".to_string(), "age".to_string(), "x".to_string()];
        let m = Matcher::new(&idx, &header);
        assert!(m.is_raw_value("张三"));
        assert!(m.is_raw_value(" A2 "));
        assert!(!m.is_raw_value("张"));
        assert!(!m.is_raw_value("赵六"));
        // (71, 200) occurs once in the raw data, (34, 100) twice.
        assert!(m.unique_combination(&[Some("200"), Some("71"), None]));
        assert!(!m.unique_combination(&[Some("100"), Some("34"), None]));
        assert!(!m.unique_combination(&[Some("200"), Some("70"), None]));
    }

    #[test]
    fn a_file_without_the_quasi_identifiers_is_not_matched() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let idx = index(dir.path());
        let m = Matcher::new(&idx, &["age".to_string()]);
        assert!(!m.unique_combination(&[Some("71")]));
    }

    #[test]
    fn bad_specs_and_missing_columns_are_errors() {
        assert!(RawSpec::parse("xml:a:b").is_err());
        assert!(RawSpec::parse("csv:a").is_err());
        let s = RawSpec::parse("csv:p.json:/data/a:b.csv").expect("ok");
        assert_eq!(s.file, PathBuf::from("/data/a:b.csv"));
        let dir = tempfile::TempDir::new().expect("tempdir");
        let plan = write(dir.path(), "plan.json", PLAN);
        let file = write(dir.path(), "raw.csv", "id,age\n1,2\n");
        let mut idx = RawIndex::new(b"0123456789abcdef");
        let e = idx
            .add(&RawSpec {
                format: FileType::Csv,
                plan,
                file,
            })
            .expect_err("missing column");
        assert!(e.contains("\"name\""), "{e}");
    }

    #[test]
    fn two_keys_give_unrelated_digests() {
        let a = Hmac::new(b"key-one-0123456789");
        let b = Hmac::new(b"key-two-0123456789");
        assert_ne!(digest(&a, "张三"), digest(&b, "张三"));
        assert_eq!(digest(&a, "张三"), digest(&a, " 张三\n"));
    }

    #[test]
    fn matchable_trims_as_str_trim_does() {
        for v in [
            "张三",
            " 张三",
            "张三\u{3000}",
            "\t李四 ",
            "a",
            " a ",
            "",
            "  ",
            "ab",
        ] {
            let want = Some(v.trim()).filter(|t| t.chars().count() >= MIN_VALUE_CHARS);
            assert_eq!(matchable(v), want, "{v:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn matchable_is_trim_and_count(v in "[a张é \t\u{b}\u{85}\u{a0}\u{1680}\u{2028}\u{205f}\u{3000}\u{3001}\u{2030}]{0,7}") {
            let want = Some(v.trim()).filter(|t| t.chars().count() >= MIN_VALUE_CHARS);
            proptest::prop_assert_eq!(matchable(&v), want);
        }
    }

    #[test]
    fn may_be_space_covers_every_white_space_character() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let mut b = [0u8; 4];
            let lead = c.encode_utf8(&mut b).as_bytes()[0];
            assert!(!c.is_whitespace() || may_be_space(lead), "{c:?}");
            if c.is_ascii() {
                assert_eq!(c.is_whitespace(), may_be_space(lead), "{c:?}");
            }
        }
    }
}
