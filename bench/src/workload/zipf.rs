//! Discrete distributions for the generators: Zipf over ranks and weighted choices.

use rand::Rng;

/// Draws ranks `0..n` with probability proportional to `1 / (rank + 1)^s`, or uniformly.
#[derive(Debug, Clone)]
pub struct Ranks {
    /// Cumulative weights, ending at 1.
    cdf: Vec<f64>,
}

impl Ranks {
    /// Zipf with exponent `s` over `n` ranks (`n >= 1`).
    pub fn zipf(n: usize, s: f64) -> Self {
        Self::from_weights((1..=n.max(1)).map(|k| (k as f64).powf(-s)))
    }

    /// Uniform over `n` ranks.
    pub fn uniform(n: usize) -> Self {
        Self::from_weights(std::iter::repeat_n(1.0, n.max(1)))
    }

    /// Ranks with the given (non-negative, not all zero) weights.
    pub fn from_weights(weights: impl IntoIterator<Item = f64>) -> Self {
        let mut cdf: Vec<f64> = weights
            .into_iter()
            .scan(0.0, |acc, w| {
                *acc += w;
                Some(*acc)
            })
            .collect();
        let total = cdf.last().copied().unwrap_or(1.0);
        cdf.iter_mut().for_each(|c| *c /= total);
        Self { cdf }
    }

    /// The number of ranks.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// Whether there is no rank (never: constructors make at least one).
    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// Draws a rank.
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    #[test]
    fn zipf_favours_low_ranks() {
        let ranks = Ranks::zipf(100, 1.0);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = [0usize; 100];
        for _ in 0..100_000 {
            counts[ranks.sample(&mut rng)] += 1;
        }
        // P(0) = 1 / H(100) ~ 0.193; P(1) ~ 0.096.
        assert!((18_000..21_000).contains(&counts[0]), "{}", counts[0]);
        assert!((8_500..10_800).contains(&counts[1]), "{}", counts[1]);
        assert!(counts[99] < 500);
    }

    #[test]
    fn weights_are_respected() {
        let ranks = Ranks::from_weights([1.0, 0.0, 3.0]);
        let mut rng = SmallRng::seed_from_u64(2);
        let mut counts = [0usize; 3];
        for _ in 0..40_000 {
            counts[ranks.sample(&mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!((9_000..11_000).contains(&counts[0]), "{}", counts[0]);
        assert_eq!(Ranks::uniform(4).len(), 4);
    }
}
