//! Workload W2 (REIN / H-Tree family): interval subscriptions over a few dense attributes.
//!
//! 20 integer attributes `x0..x19` with values in `[0, 10^6)`. Each subscription has interval
//! predicates `lo <= x AND x <= hi` on 10 distinct attributes; each interval covers `width` of
//! the domain, with `lo` uniform over the positions where the interval fits. Each event
//! carries all 20 attributes, uniform over the domain. A subscription matches with probability
//! `width^10` (about 0.1% at width 0.5).

use rand::Rng;
use rand::seq::index::sample;

use palio_filter::Event;

use super::{Cmp, Const, GenConstraint, Subscription, attr_name};

/// The W2 parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct W2 {
    /// Number of attributes (20).
    pub attrs: u32,
    /// Values lie in `[0, domain)` (10^6).
    pub domain: i32,
    /// Intervals per subscription, on distinct attributes (10).
    pub predicates: u32,
    /// Fraction of the domain each interval covers (0.2 / 0.5 / 0.8).
    pub width: f64,
}

impl W2 {
    /// The standard W2 with intervals of `width`.
    pub fn new(width: f64) -> Self {
        Self {
            attrs: 20,
            domain: 1_000_000,
            predicates: 10,
            width,
        }
    }

    /// The number of integers each interval covers.
    fn span(&self) -> i32 {
        // The float-to-int cast saturates; the clamp keeps the span within the domain.
        ((self.width * f64::from(self.domain)).round() as i32).clamp(1, self.domain)
    }

    /// One subscription, to destination `dest`.
    pub fn subscription(&self, rng: &mut impl Rng, dest: u32) -> Subscription {
        let span = self.span();
        let mut attrs: Vec<u32> = sample(rng, self.attrs as usize, self.predicates as usize)
            .into_iter()
            .map(|a| u32::try_from(a).expect("attribute numbers are small"))
            .collect();
        attrs.sort_unstable();
        let mut constraints = Vec::with_capacity(2 * attrs.len());
        for attr in attrs {
            let lo = rng.random_range(0..=self.domain - span);
            let hi = lo + span - 1;
            constraints.push(GenConstraint {
                attr,
                op: Cmp::Ge,
                value: Const::Int(lo),
            });
            constraints.push(GenConstraint {
                attr,
                op: Cmp::Le,
                value: Const::Int(hi),
            });
        }
        Subscription { constraints, dest }
    }

    /// One event: every attribute, uniform over the domain.
    pub fn event(&self, rng: &mut impl Rng) -> Event {
        (0..self.attrs)
            .map(|a| (attr_name(a), rng.random_range(0..self.domain).into()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    #[test]
    fn subscriptions_have_ten_intervals_of_the_given_width() {
        let w = W2::new(0.5);
        let mut rng = SmallRng::seed_from_u64(3);
        for i in 0..100 {
            let s = w.subscription(&mut rng, i);
            assert_eq!(s.dest, i);
            assert_eq!(s.constraints.len(), 20);
            let mut attrs: Vec<u32> = s.constraints.iter().map(|c| c.attr).collect();
            attrs.dedup();
            assert_eq!(attrs.len(), 10, "distinct attributes");
            for pair in s.constraints.chunks(2) {
                let (Const::Int(lo), Const::Int(hi)) = (pair[0].value, pair[1].value) else {
                    panic!("integer bounds");
                };
                assert_eq!(hi - lo + 1, 500_000);
                assert!(lo >= 0 && hi < 1_000_000);
            }
        }
    }

    #[test]
    fn match_rate_is_about_width_to_the_tenth() {
        let w = W2::new(0.8);
        let mut rng = SmallRng::seed_from_u64(4);
        let subs: Vec<_> = (0..2000)
            .map(|i| w.subscription(&mut rng, i).to_routable())
            .collect();
        let events: Vec<_> = (0..50).map(|_| w.event(&mut rng)).collect();
        let matches: usize = events
            .iter()
            .map(|e| subs.iter().filter(|s| s.matches(e)).count())
            .sum();
        let rate = matches as f64 / (2000.0 * 50.0);
        // 0.8^10 ~ 0.107.
        assert!((0.08..0.14).contains(&rate), "{rate}");
    }
}
