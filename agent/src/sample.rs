//! Row sampling and the portable pseudo-random numbers behind it and noise.
//!
//! The generator is SplitMix64 (Steele, Lea and Flood 2014), written out
//! here: 64-bit integer arithmetic only, so the same seed gives the same
//! rows and the same noise on every machine and in every build.
//!
//! - Bernoulli (`fraction`): row `i` is kept when `u(seed, i) < fraction`,
//!   a stateless hash of the seed and the row index; it streams.
//! - Reservoir (`rows`): Algorithm R over a SplitMix64 stream seeded with
//!   the seed; it holds at most `rows` rows, which are written in input order.

use crate::plan::Sampling;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finalizer: a bijective mix of 64 bits.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 stream.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix(self.0)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-64 * n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Uniform in `[0, 1)` from 64 random bits (53 significant bits).
pub fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Random bits that depend only on the seed, the row and a stream tag
/// (for example a column), never on what came before.
pub fn hash3(seed: u64, row: u64, tag: u64) -> u64 {
    mix(mix(mix(seed ^ GAMMA).wrapping_add(row)).wrapping_add(tag))
}

/// What to do with one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Write it now.
    Write,
    /// Put it into this slot of the reservoir (replacing what is there).
    Store(usize),
    /// Leave it out.
    Skip,
}

/// Decides row by row.
#[derive(Debug, Clone)]
pub enum Sampler {
    All,
    Bernoulli { fraction: f64, seed: u64 },
    Reservoir { size: u64, rng: SplitMix64 },
}

impl Sampler {
    pub fn new(sampling: Option<Sampling>) -> Self {
        match sampling {
            None => Sampler::All,
            Some(Sampling::Fraction { fraction, seed }) => Sampler::Bernoulli { fraction, seed },
            Some(Sampling::Rows { rows, seed }) => Sampler::Reservoir {
                size: rows,
                rng: SplitMix64::new(seed),
            },
        }
    }

    /// The decision for the row with this 0-based index (called once per
    /// row, in order).
    pub fn decide(&mut self, index: u64) -> Decision {
        match self {
            Sampler::All => Decision::Write,
            Sampler::Bernoulli { fraction, seed } => {
                if unit(hash3(*seed, index, 0)) < *fraction {
                    Decision::Write
                } else {
                    Decision::Skip
                }
            }
            Sampler::Reservoir { size, rng } => {
                if index < *size {
                    Decision::Store(index as usize)
                } else {
                    let j = rng.below(index + 1);
                    if j < *size {
                        Decision::Store(j as usize)
                    } else {
                        Decision::Skip
                    }
                }
            }
        }
    }

    /// True when rows are held back until the end.
    pub fn is_reservoir(&self) -> bool {
        matches!(self, Sampler::Reservoir { .. })
    }
}

/// A reservoir of `(row index, row)`, written in input order at the end.
#[derive(Debug, Default)]
pub struct Reservoir<T> {
    rows: Vec<(u64, T)>,
}

impl<T> Reservoir<T> {
    pub fn new() -> Self {
        Reservoir { rows: Vec::new() }
    }

    /// Apply a [`Decision::Store`]; `slot` is either the next free slot or
    /// an occupied one.
    pub fn store(&mut self, slot: usize, index: u64, row: T) {
        if slot < self.rows.len() {
            self.rows[slot] = (index, row);
        } else {
            self.rows.push((index, row));
        }
    }

    /// The kept rows in input order.
    pub fn into_sorted(mut self) -> Vec<(u64, T)> {
        self.rows.sort_unstable_by_key(|(i, _)| *i);
        self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(sampling: Sampling, n: u64) -> Vec<u64> {
        let mut s = Sampler::new(Some(sampling));
        let mut out = Vec::new();
        let mut res = Reservoir::new();
        for i in 0..n {
            match s.decide(i) {
                Decision::Write => out.push(i),
                Decision::Store(slot) => res.store(slot, i, i),
                Decision::Skip => {}
            }
        }
        out.extend(res.into_sorted().into_iter().map(|(i, _)| i));
        out
    }

    #[test]
    fn splitmix_is_the_reference_sequence() {
        // First outputs of SplitMix64 seeded with 0 (as in the reference C code).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn bernoulli_fraction_is_roughly_right_on_10k_rows() {
        let kept = run(
            Sampling::Fraction {
                fraction: 0.1,
                seed: 42,
            },
            10_000,
        );
        assert!((900..=1100).contains(&kept.len()), "{}", kept.len());
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn reservoir_keeps_exactly_n_in_order() {
        let kept = run(Sampling::Rows { rows: 100, seed: 7 }, 10_000);
        assert_eq!(kept.len(), 100);
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
        // Spread over the input, not only the first rows.
        assert!(kept.iter().any(|&i| i > 5_000));
        // Fewer rows than asked: all of them.
        assert_eq!(
            run(Sampling::Rows { rows: 100, seed: 7 }, 30),
            (0..30).collect::<Vec<_>>()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn same_seed_same_rows(seed in any::<u64>(), rows in 1u64..50, fraction in 0.01f64..1.0) {
            prop_assert_eq!(run(Sampling::Rows { rows, seed }, 2_000), run(Sampling::Rows { rows, seed }, 2_000));
            prop_assert_eq!(
                run(Sampling::Fraction { fraction, seed }, 2_000),
                run(Sampling::Fraction { fraction, seed }, 2_000)
            );
        }

        #[test]
        fn different_seeds_differ(seed in any::<u64>()) {
            prop_assert_ne!(
                run(Sampling::Rows { rows: 20, seed }, 2_000),
                run(Sampling::Rows { rows: 20, seed: seed ^ 1 }, 2_000)
            );
        }
    }
}
