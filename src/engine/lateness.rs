//! Firing lateness: how long after its due time a member was made ready
//! by the timing wheel. Kept as a fixed-bucket histogram (the buckets the
//! Prometheus histogram exports) plus the exact maximum.

/// Upper bounds of the buckets, in microseconds; a last bucket takes the rest.
pub const BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 10_000_000,
];

/// A lateness histogram.
#[derive(Debug, Clone, Default)]
pub struct Lateness {
    /// Count per bucket; the last one counts everything above the last bound.
    pub buckets: [u64; BOUNDS_US.len() + 1],
    pub count: u64,
    pub sum_us: u64,
    pub max_us: u64,
}

impl Lateness {
    /// Records one member made ready `us` microseconds after its due time.
    pub fn record(&mut self, us: u64) {
        let i = BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BOUNDS_US.len());
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1): an upper
    /// estimate, exact to the bucket, capped by the true maximum.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return BOUNDS_US
                    .get(i)
                    .copied()
                    .unwrap_or(self.max_us)
                    .min(self.max_us);
            }
        }
        self.max_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_upper_bounds_capped_by_max() {
        let mut l = Lateness::default();
        for _ in 0..98 {
            l.record(50);
        }
        l.record(700);
        l.record(3_000);
        assert_eq!(l.count, 100);
        assert_eq!(l.quantile_us(0.5), 100);
        assert_eq!(l.quantile_us(0.99), 1_000);
        assert_eq!(l.quantile_us(1.0), 3_000);
        assert_eq!(l.max_us, 3_000);
    }
}
