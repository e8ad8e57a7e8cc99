//! HDR-style latency histogram: log-linear buckets over `u64` values
//! (nanoseconds in practice) and the percentile summary built from it.
//!
//! Owns: bucket arithmetic, recording, merging and percentile queries.
//!
//! Invariants:
//! - Values below 2^[`SUB_BITS`] land in a bucket of their own (exact).
//!   Above that every power-of-two range is split into 2^([`SUB_BITS`]-1)
//!   equal buckets, so a bucket is never wider than 1/512 of its lowest
//!   value: a reported percentile is at most 0.2 % above the true one and
//!   never below it (a bucket reports its highest equivalent value).
//! - Values above [`MAX_TRACKABLE`] (about 4.9 hours in ns) are clamped
//!   into the last bucket; `min`, `max` and the mean stay exact.
//! - Recording is one `leading_zeros`, a shift and an add: cheap enough for
//!   every message on the hot path. The bucket array is allocated on the
//!   first record, so an unused histogram costs nothing.

/// Bits of sub-bucket resolution: 2^10 exact values, then 512 buckets per
/// power of two.
pub const SUB_BITS: u32 = 10;

const HALF: u64 = 1 << (SUB_BITS - 1);

/// Largest value with its own bucket; larger values share the last one.
pub const MAX_TRACKABLE: u64 = (1 << 44) - 1;

/// Number of buckets needed to cover `0..=MAX_TRACKABLE`.
const BUCKETS: usize = bucket_index(MAX_TRACKABLE) + 1;

/// Bucket of `value` (not clamped: callers clamp to [`MAX_TRACKABLE`]).
#[inline]
const fn bucket_index(value: u64) -> usize {
    if value < 2 * HALF {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - (SUB_BITS - 1);
    (shift as u64 * HALF + (value >> shift)) as usize
}

/// Lowest value of bucket `index` and the bucket width.
#[inline]
fn bucket_range(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < 2 * HALF {
        return (index, 1);
    }
    let shift = index / HALF - 1;
    let mantissa = index - shift * HALF;
    (mantissa << shift, 1 << shift)
}

/// Highest value that falls into the same bucket as `value`.
pub fn highest_equivalent(value: u64) -> u64 {
    let (low, width) = bucket_range(bucket_index(value.min(MAX_TRACKABLE)));
    low + width - 1
}

/// A latency histogram. See the module docs for its precision.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Histogram {
    /// An empty histogram (allocates nothing until the first record).
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Record one value.
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    /// Record `n` occurrences of one value.
    #[inline]
    pub fn record_n(&mut self, value: u64, n: u64) {
        if n == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
            self.min = u64::MAX;
        }
        self.counts[bucket_index(value.min(MAX_TRACKABLE))] += n;
        self.count += n;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += u128::from(value) * u128::from(n);
    }

    /// Add every value recorded in `other`.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if self.counts.is_empty() {
            *self = other.clone();
            return;
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Smallest recorded value (exact); `None` when empty.
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest recorded value (exact); `None` when empty.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// Arithmetic mean (exact); `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The value at percentile `q` (0..=100): the smallest recorded value
    /// `v` (at bucket precision) such that at least `q` % of the values are
    /// `<= v`. Never below the true percentile, never above `max`.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = rank_for(q, self.count);
        let mut seen = 0u64;
        for (index, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, width) = bucket_range(index);
                let high = low + width - 1;
                return Some(high.clamp(self.min, self.max));
            }
        }
        // Unreachable while `count` equals the sum of `counts`.
        Some(self.max)
    }

    /// The usual summary: count, min, p50, p90, p99, p99.9, max, mean.
    pub fn summary(&self) -> Option<Summary> {
        Some(Summary {
            count: self.count,
            min: self.min()?,
            p50: self.percentile(50.0)?,
            p90: self.percentile(90.0)?,
            p99: self.percentile(99.0)?,
            p999: self.percentile(99.9)?,
            max: self.max()?,
            mean: self.mean()?,
        })
    }
}

/// 1-based rank of percentile `q` among `count` sorted values
/// (nearest-rank definition), clamped to `1..=count`.
pub fn rank_for(q: f64, count: u64) -> u64 {
    let q = if q.is_nan() {
        100.0
    } else {
        q.clamp(0.0, 100.0)
    };
    let exact = q / 100.0 * count as f64;
    // 99.9 / 100 * 1000 is 999.0000000000001 in binary floating point:
    // snap values within rounding error of an integer before the ceiling.
    let nearest = exact.round();
    let rank = if (exact - nearest).abs() <= 1e-9 * nearest.max(1.0) {
        nearest
    } else {
        exact.ceil()
    } as u64;
    rank.clamp(1, count.max(1))
}

/// Exact nearest-rank summary of a small sample (sorted in place); `None`
/// when empty. For the scenarios with one value per client.
pub fn exact_summary(values: &mut [u64]) -> Option<Summary> {
    values.sort_unstable();
    let count = values.len() as u64;
    let at = |q: f64| values[rank_for(q, count) as usize - 1];
    Some(Summary {
        count,
        min: *values.first()?,
        p50: at(50.0),
        p90: at(90.0),
        p99: at(99.0),
        p999: at(99.9),
        max: *values.last()?,
        mean: values.iter().map(|&v| v as f64).sum::<f64>() / count as f64,
    })
}

/// Percentiles of one histogram, in the histogram's unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Number of values.
    pub count: u64,
    /// Smallest value.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
    /// Arithmetic mean.
    pub mean: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_values_are_exact() {
        for v in 0..2 * HALF {
            assert_eq!(bucket_index(v), v as usize);
            assert_eq!(bucket_range(v as usize), (v, 1));
            assert_eq!(highest_equivalent(v), v);
        }
    }

    #[test]
    fn buckets_are_contiguous_and_monotonic() {
        // Each bucket starts where the previous one ended.
        let mut expected_low = 0u64;
        for index in 0..BUCKETS {
            let (low, width) = bucket_range(index);
            assert_eq!(low, expected_low, "bucket {index}");
            assert_eq!(bucket_index(low), index);
            assert_eq!(bucket_index(low + width - 1), index);
            expected_low = low + width;
        }
        assert_eq!(expected_low, MAX_TRACKABLE + 1);
    }

    #[test]
    fn bucket_width_is_bounded_relative_to_value() {
        for index in 2 * HALF as usize..BUCKETS {
            let (low, width) = bucket_range(index);
            assert!(width * HALF <= low, "bucket {index}: {low}+{width}");
        }
    }

    #[test]
    fn empty_histogram_has_no_summary() {
        let h = Histogram::new();
        assert_eq!(h.count(), 0);
        assert_eq!(h.percentile(50.0), None);
        assert!(h.summary().is_none());
        assert!(h.counts.is_empty(), "no allocation before the first record");
    }

    #[test]
    fn nearest_rank() {
        assert_eq!(rank_for(50.0, 1), 1);
        assert_eq!(rank_for(0.0, 10), 1);
        assert_eq!(rank_for(50.0, 10), 5);
        assert_eq!(rank_for(50.1, 10), 6);
        assert_eq!(rank_for(99.0, 100), 99);
        assert_eq!(rank_for(99.9, 1000), 999);
        assert_eq!(rank_for(100.0, 7), 7);
        assert_eq!(rank_for(250.0, 7), 7);
    }

    #[test]
    fn percentiles_of_one_to_hundred() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), Some(50));
        assert_eq!(h.percentile(99.0), Some(99));
        assert_eq!(h.percentile(100.0), Some(100));
        assert_eq!(h.min(), Some(1));
        assert_eq!(h.max(), Some(100));
        assert_eq!(h.mean(), Some(50.5));
        let s = h.summary().expect("not empty");
        assert_eq!((s.count, s.p50, s.p90, s.p999), (100, 50, 90, 100));
    }

    #[test]
    fn large_values_clamp_but_keep_exact_max() {
        let mut h = Histogram::new();
        h.record(u64::MAX);
        h.record(5);
        assert_eq!(h.max(), Some(u64::MAX));
        assert_eq!(h.percentile(100.0), Some(highest_equivalent(MAX_TRACKABLE)));
        assert_eq!(h.percentile(50.0), Some(5));
    }

    #[test]
    fn merge_equals_recording_into_one() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        let mut both = Histogram::new();
        for v in [3u64, 70_000, 1_000_000, 12] {
            a.record(v);
            both.record(v);
        }
        for v in [9u64, 8_000_000_000] {
            b.record(v);
            both.record(v);
        }
        let mut empty = Histogram::new();
        empty.merge(&a);
        empty.merge(&b);
        a.merge(&b);
        for q in [0.0, 25.0, 50.0, 90.0, 99.0, 100.0] {
            assert_eq!(a.percentile(q), both.percentile(q));
            assert_eq!(empty.percentile(q), both.percentile(q));
        }
        assert_eq!(a.count(), 6);
        assert_eq!(a.min(), Some(3));
        assert_eq!(a.max(), Some(8_000_000_000));
    }

    #[test]
    fn exact_summary_of_a_sample() {
        assert_eq!(exact_summary(&mut []), None);
        let mut v: Vec<u64> = (1..=200).rev().collect();
        let s = exact_summary(&mut v).expect("not empty");
        assert_eq!((s.count, s.min, s.p50, s.p90), (200, 1, 100, 180));
        assert_eq!((s.p99, s.p999, s.max), (198, 200, 200));
        assert_eq!(s.mean, 100.5);
    }

    proptest! {
        /// Against a sorted vector: the histogram answer is never below the
        /// exact nearest-rank percentile and at most one bucket width above.
        #[test]
        fn percentile_matches_sorted_model(
            mut values in proptest::collection::vec(0u64..50_000_000_000, 1..400),
            q in 0.0f64..=100.0,
        ) {
            let mut h = Histogram::new();
            for &v in &values {
                h.record(v);
            }
            values.sort_unstable();
            let exact = values[rank_for(q, values.len() as u64) as usize - 1];
            let got = h.percentile(q).expect("not empty");
            prop_assert!(got >= exact, "got {} < exact {}", got, exact);
            prop_assert!(got <= highest_equivalent(exact), "got {} exact {}", got, exact);
            prop_assert!(got <= values[values.len() - 1]);
        }

        #[test]
        fn value_lies_in_its_bucket(v in 0u64..=MAX_TRACKABLE) {
            let (low, width) = bucket_range(bucket_index(v));
            prop_assert!(low <= v && v < low + width);
        }
    }
}
