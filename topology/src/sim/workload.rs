//! Synthetic content with regional locality: subscriptions, advertisements and events.
//!
//! # The content model
//!
//! Every event carries `pool` (a string), `topic` (a string) and the integers `x0`…`x3`
//! (uniform in `0..100`). There is one *pool* per region (`pool = 'r<k>'`) and one global pool
//! (`pool = 'g'`); each pool has its own [`ContentModel::topics`] topics (`'<pool>.t<i>'`),
//! drawn Zipf(1).
//!
//! **Locality `L`** is the probability that a subscription's (or a publication's) pool is the
//! pool of its broker's region; otherwise it is the global pool. At `L = 0` all content is
//! global, every subscription may match a publication from anywhere, and routing state cannot
//! be confined; at `L = 1` content never leaves its region.
//!
//! A subscription is `pool = '<pool>' AND topic = '<topic>'`, then 0 to 3 constraints
//! (10/40/35/15 %) on distinct `x` attributes: `<` 40 %, `>` 40 %,
//! `=` 20 %, against a uniform constant in `0..100`, in the spirit of Carzaniga and Wolf's
//! SIENA workloads. Many subscriptions therefore cover others (same topic, a wider range),
//! which is what covering exploits. With [`ContentModel::exotic`] > 0 some subscriptions take
//! rarer forms (disjunctions, arithmetic that has no exact routable form, `LIKE`, `!=`, and
//! the match-all `TRUE`) and some events lack `x` attributes, to exercise every path.
//!
//! Each broker's publishers advertise `pool = 'r<k>'` for their region (when `L > 0`) and
//! `pool = 'g'` (when `L < 1`); every publication is covered by one of them.

use palio_filter::{AttrName, Event, Value};

use crate::sim::rng::{SimRng, Zipf};

/// Where a piece of content comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pool {
    /// A region's own pool.
    Region(u32),
    /// The pool shared by every region.
    Global,
}

impl Pool {
    /// The value of the `pool` attribute.
    pub fn name(self) -> String {
        match self {
            Pool::Region(r) => format!("r{r}"),
            Pool::Global => "g".to_owned(),
        }
    }
}

/// Generates content for a set of regions (see the module docs).
#[derive(Debug, Clone)]
pub struct ContentModel {
    /// Topics per pool.
    pub topics: usize,
    /// Probability that content is drawn from the broker's region's pool.
    pub locality: f64,
    /// Probability that a subscription takes one of the rarer forms.
    pub exotic: f64,
    /// Topic popularity.
    zipf: Zipf,
}

impl ContentModel {
    /// A model with `topics` topics per pool and locality `locality` (clamped to `[0, 1]`).
    pub fn new(topics: usize, locality: f64, exotic: f64) -> Self {
        Self {
            topics: topics.max(1),
            locality: locality.clamp(0.0, 1.0),
            exotic: exotic.clamp(0.0, 1.0),
            zipf: Zipf::new(topics.max(1), 1.0),
        }
    }

    /// The pool of one subscription or publication at a broker of `region`.
    pub fn pool(&self, region: u32, rng: &mut SimRng) -> Pool {
        if rng.chance(self.locality) {
            Pool::Region(region)
        } else {
            Pool::Global
        }
    }

    fn topic(&self, pool: Pool, rng: &mut SimRng) -> String {
        format!("{}.t{}", pool.name(), self.zipf.sample(rng))
    }

    /// The text of a subscription filter for a broker of `region`.
    pub fn subscription(&self, region: u32, rng: &mut SimRng) -> String {
        let pool = self.pool(region, rng);
        let p = pool.name();
        if rng.chance(self.exotic) {
            let a = rng.below(100);
            let b = rng.below(100);
            return match rng.below(6) {
                0 => format!("pool = '{p}' AND (x0 > {a} OR x1 < {b})"),
                1 => format!("pool = '{p}' AND x0 + x1 > {}", a + b),
                2 => format!("pool = '{p}' AND topic LIKE '{p}.t{}%'", a % 10),
                3 => format!("pool = '{p}' AND x2 != {a}"),
                4 => format!("topic = '{}' OR x3 = {a}", self.topic(pool, rng)),
                _ => "TRUE".to_owned(),
            };
        }
        let mut text = format!("pool = '{p}' AND topic = '{}'", self.topic(pool, rng));
        let extra = match rng.below(100) {
            0..10 => 0,
            10..50 => 1,
            50..85 => 2,
            _ => 3,
        };
        let mut attrs = [0, 1, 2, 3];
        rng.shuffle(&mut attrs);
        let mut chosen = attrs[..extra].to_vec();
        chosen.sort_unstable();
        for x in chosen {
            let op = match rng.below(10) {
                0..4 => "<",
                4..8 => ">",
                _ => "=",
            };
            text += &format!(" AND x{x} {op} {}", rng.below(100));
        }
        text
    }

    /// The advertisements of a broker of `region`.
    pub fn advertisements(&self, region: u32) -> Vec<String> {
        let mut out = Vec::new();
        if self.locality > 0.0 {
            out.push(format!("pool = '{}'", Pool::Region(region).name()));
        }
        if self.locality < 1.0 {
            out.push(format!("pool = '{}'", Pool::Global.name()));
        }
        out
    }

    /// An event published at a broker of `region`.
    pub fn event(&self, region: u32, rng: &mut SimRng) -> Event {
        let pool = self.pool(region, rng);
        let mut ev = Event::new();
        let mut set = |name: &str, v: Value| {
            if let Ok(n) = AttrName::new(name) {
                ev.set(n, v);
            }
        };
        set("pool", Value::String(pool.name()));
        set("topic", Value::String(self.topic(pool, rng)));
        for x in 0..4 {
            let v = rng.below(100) as i32;
            if self.exotic > 0.0 && rng.chance(0.1) {
                continue;
            }
            set(&format!("x{x}"), Value::Int(v));
        }
        ev
    }
}

#[cfg(test)]
mod tests {
    use palio_filter::Filter;

    use super::*;

    #[test]
    fn generated_filters_parse_and_advertisements_cover_events() {
        let mut rng = SimRng::new(3);
        for locality in [0.0, 0.5, 1.0] {
            let m = ContentModel::new(20, locality, 0.3);
            for _ in 0..300 {
                let region = rng.below(4) as u32;
                let text = m.subscription(region, &mut rng);
                Filter::new(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
                let ev = m.event(region, &mut rng);
                let advs: Vec<Filter> = m
                    .advertisements(region)
                    .iter()
                    .map(|a| Filter::new(a).unwrap())
                    .collect();
                assert!(advs.iter().any(|a| a.covers_event(&ev)), "{ev:?}");
            }
        }
    }
}
