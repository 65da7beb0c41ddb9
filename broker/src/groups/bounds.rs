//! The bounds on what the groups task keeps from peers' floods: declarations, brokers' names
//! and member lists. Peers are brokers of the same network, but a misconfigured or faulty one
//! must not be able to grow this broker's memory without end: whatever breaks a bound is not
//! taken (nor passed on) and is counted in `palio_limits_hit_total{limit}`.
//!
//! The number of groups is a setting (`limits.max_groups`); the others are fixed here, large
//! enough for any network the groups were designed for.

use palio_protocol::valid_group_name;

use crate::wire::GroupDecl;

/// The most brokers whose names are kept (`limit="group_broker_names"`).
pub(super) const MAX_BROKER_NAMES: usize = 4096;

/// The longest broker name kept, in bytes (a broker's `--id` is at most 64 characters; a
/// broker without one is named `broker@ADDRESS`).
pub(super) const MAX_BROKER_NAME: usize = 256;

/// The most members of one group listed, over every broker (`limit="group_members"`). A join
/// at this broker beyond it is refused with `limit_exceeded`.
pub(super) const MAX_GROUP_MEMBERS: usize = 1024;

/// The most brokers with a member list for one group: the brokers a causal core tracks.
pub(super) const MAX_MEMBER_LISTS: usize = 1024;

/// The longest member name (`client#member@broker`) kept, in bytes.
pub(super) const MAX_MEMBER_NAME: usize = 512;

/// The longest client name this broker puts in its members' names, in bytes (a hello's name
/// is free-form); longer ones are cut, so that this broker's lists stay within the bounds.
pub(super) const MAX_CLIENT_NAME: usize = 128;

/// The most replica brokers a declaration may name (this broker gives a group 3).
pub(super) const MAX_VOTERS: usize = 16;

/// The longest owner (a principal's name) a declaration may carry, in bytes.
pub(super) const MAX_OWNER: usize = 1024;

/// Something a bound kept out: not taken, and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub(super) struct OverLimit {
    /// The `limit` label of `palio_limits_hit_total`: the setting's name, or the bound's.
    pub(super) limit: &'static str,
    /// What was refused and why, for the log and for a client's error.
    pub(super) why: String,
}

impl OverLimit {
    pub(super) fn new(limit: &'static str, why: String) -> Self {
        Self { limit, why }
    }
}

/// Checks a declaration's shape against the bounds (`limit="group_decl"`).
pub(super) fn check_decl(d: &GroupDecl) -> Result<(), OverLimit> {
    let why = if !valid_group_name(&d.name) {
        format!(
            "invalid group name {:?}",
            d.name.chars().take(80).collect::<String>()
        )
    } else if d.voters.len() > MAX_VOTERS {
        format!(
            "group {:?} names {} replicas, more than {MAX_VOTERS}",
            d.name,
            d.voters.len()
        )
    } else if d.owner.len() > MAX_OWNER {
        format!(
            "group {:?} has an owner of {} bytes, more than {MAX_OWNER}",
            d.name,
            d.owner.len()
        )
    } else {
        return Ok(());
    };
    Err(OverLimit::new("group_decl", why))
}

/// `name` cut to at most `max` bytes, at a character boundary.
pub(super) fn cut(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use palio_topology::BrokerId;
    use palio_topology::group::Order;

    use super::*;

    fn decl(name: &str, voters: usize, owner: usize) -> GroupDecl {
        GroupDecl {
            name: name.into(),
            order: Order::Total,
            voters: (0..voters).map(|v| BrokerId(v as u32)).collect(),
            creator: BrokerId(0),
            generation: 1,
            removed: false,
            owner: "o".repeat(owner),
        }
    }

    #[test]
    fn declarations_past_a_bound_are_refused() {
        assert_eq!(check_decl(&decl("g", MAX_VOTERS, MAX_OWNER)), Ok(()));
        for bad in [
            decl("", 1, 0),
            decl("a b", 1, 0),
            decl(&"g".repeat(65), 1, 0),
            decl("g", MAX_VOTERS + 1, 0),
            decl("g", 1, MAX_OWNER + 1),
        ] {
            let e = check_decl(&bad).unwrap_err();
            assert_eq!(e.limit, "group_decl", "{e}");
        }
    }

    #[test]
    fn names_are_cut_at_a_character_boundary() {
        assert_eq!(cut("abc", 8), "abc");
        assert_eq!(cut("abcdef", 3), "abc");
        assert_eq!(cut("aé", 2), "a", "é is two bytes");
    }
}
