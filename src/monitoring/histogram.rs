//! A log-linear histogram of durations in nanoseconds, the layout HdrHistogram and tokio's
//! metrics use: values below 32 ns each have a bucket of their own; above that every power of
//! two is split into 32 equal sub-buckets. Recording is a leading-zero count, a shift and an
//! add; percentiles are computed only when read (in Python, from the exported counts).
//!
//! Error bound: a value is reported as its bucket's upper bound, at most 1/32 (3.1 %) above the
//! value; reported as the bucket's midpoint (what percentiles use) it is within 1/64 (1.6 %).
//! The range is 1 ns to 2^40 ns (about 18 minutes); longer values land in the last bucket, and
//! `max` stays exact.

/// Sub-buckets per power of two, as a power of two.
pub const SUB_BITS: u32 = 5;
#[cfg(test)]
const SUB_COUNT: u64 = 1 << SUB_BITS;
/// Values up to 2^MAX_EXP - 1 ns have a bucket; larger ones are clamped into the last.
pub const MAX_EXP: u32 = 40;
/// Number of buckets: the linear part (SUB_COUNT) plus SUB_COUNT per power of two above it.
pub const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 1) as usize) << SUB_BITS;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    pub sum_ns: u64,
    pub max_ns: u64,
    pub min_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            sum_ns: 0,
            max_ns: 0,
            min_ns: u64::MAX,
        }
    }
}

/// The bucket a value falls in, without branches: below 32 the shift is 0 and the index is the
/// value; above, `value >> shift` is in 32..64, so the index is `(shift + 1) * 32 + sub-bucket`.
#[inline]
pub fn bucket_index(value_ns: u64) -> usize {
    let exp = 63 - (value_ns | 1).leading_zeros();
    let shift = exp.saturating_sub(SUB_BITS);
    let index = ((shift as usize) << SUB_BITS) + (value_ns >> shift) as usize;
    index.min(BUCKETS - 1)
}

/// The smallest value of bucket `index`; the bucket holds `[lower(i), lower(i + 1))`.
/// (Python's `monitored_ioloop.monitoring` computes the same bounds.)
#[cfg(test)]
pub fn bucket_lower_bound(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_COUNT {
        return index;
    }
    let shift = (index >> SUB_BITS) - 1;
    (SUB_COUNT + (index & (SUB_COUNT - 1))) << shift
}

impl Histogram {
    #[inline]
    pub fn record(&mut self, value_ns: u64) {
        self.counts[bucket_index(value_ns)] += 1;
        self.sum_ns = self.sum_ns.wrapping_add(value_ns);
        self.max_ns = self.max_ns.max(value_ns);
        self.min_ns = self.min_ns.min(value_ns);
    }

    /// How many values were recorded: the buckets' sum, added up when read rather than
    /// counted on every record (the loop records two values per dispatch).
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        self.min_ns = self.min_ns.min(other.min_ns);
    }

    #[cfg(test)]
    pub fn counts(&self) -> &[u64] {
        &self.counts[..]
    }

    /// The counts as native-endian u64 bytes, trimmed after the last non-empty bucket (what
    /// Python reads with `array('Q')`).
    pub fn counts_bytes(&self) -> Vec<u8> {
        let used = self
            .counts
            .iter()
            .rposition(|&c| c != 0)
            .map_or(0, |last| last + 1);
        self.counts[..used]
            .iter()
            .flat_map(|c| c.to_ne_bytes())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        for index in 0..BUCKETS - 1 {
            let (lo, hi) = (bucket_lower_bound(index), bucket_lower_bound(index + 1));
            assert!(lo < hi, "bucket {index}: {lo} .. {hi}");
            assert_eq!(bucket_index(lo), index);
            assert_eq!(bucket_index(hi - 1), index);
        }
    }

    #[test]
    fn relative_width_is_bounded() {
        for index in SUB_COUNT as usize..BUCKETS - 1 {
            let (lo, hi) = (bucket_lower_bound(index), bucket_lower_bound(index + 1));
            let width = (hi - lo) as f64 / lo as f64;
            assert!(width <= 1.0 / 32.0 + 1e-12, "bucket {index}: {width}");
        }
    }

    #[test]
    fn covers_a_hundred_seconds_and_clamps_beyond() {
        assert!(bucket_lower_bound(BUCKETS - 1) > 100_000_000_000);
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
        let mut h = Histogram::default();
        h.record(u64::MAX / 2);
        assert_eq!(h.max_ns, u64::MAX / 2);
    }

    #[test]
    fn record_and_merge_keep_totals() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        for v in [0, 1, 31, 32, 1000, 1_000_000] {
            a.record(v);
        }
        b.record(5_000_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 7);
        assert_eq!(a.counts().iter().sum::<u64>(), 7);
        assert_eq!(a.max_ns, 5_000_000_000);
        assert_eq!(a.min_ns, 0);
        assert_eq!(a.sum_ns, 5_001_001_064);
        assert_eq!(a.counts_bytes().len() % 8, 0);
    }
}
