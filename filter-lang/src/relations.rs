//! Covering and intersection on routable forms. (To be written.)

use crate::routable::Routable;

impl Routable {
    /// Whether every event matching `other` matches `self`. Sound: `true` only when proven.
    pub fn covers(&self, _other: &Routable) -> bool {
        false
    }

    /// Whether some event may match both. Sound: `false` only when proven disjoint.
    pub fn intersects(&self, _other: &Routable) -> bool {
        true
    }
}
