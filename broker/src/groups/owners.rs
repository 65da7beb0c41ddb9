//! Who may use a group: the principal that created it (the declaration's `owner`) or an admin.
//! A group declared before groups had owners has none and is everyone's.
//!
//! Using a group is removing it, describing it (`info`, and being listed by `ls`), joining it
//! and publishing to it. Publishing needs ownership too, so a group is private to its owner
//! (and admins): the rule names consuming, acking, inspecting and removing, and a
//! group's publications reach every member, so letting others publish would let them into the
//! owner's stream. Refusals are `permission_denied`, counted in
//! `palio_permission_denied_total{action}` and logged once per client and kind.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use super::Task;
use crate::auth::Principal;
use crate::router::ClientId;

impl Task {
    /// Whether `client` may use the live group `group`; if not, the refusal (counted and
    /// logged). A group not known is not refused here: the callers answer `group_not_found`
    /// first.
    pub(super) fn check_use(&mut self, client: ClientId, group: &str) -> Result<(), String> {
        let principal = self.locals.principal(client);
        let owner = match self.catalog.live(group) {
            Some(d) if !principal.is_some_and(|p| p.may_use(&d.owner)) => d.owner.clone(),
            _ => return Ok(()),
        };
        let who = principal.map_or_else(|| "?".to_owned(), |p| p.name.to_string());
        let why = format!("group {group:?} belongs to principal {owner:?}, not to {who:?}");
        Err(self.deny(client, "group", why))
    }

    /// Counts a refusal in `palio_permission_denied_total{action}`, logs it once per client and
    /// action, and returns its message.
    pub(super) fn deny(&mut self, client: ClientId, action: &'static str, why: String) -> String {
        self.metrics
            .permission_denied
            .with_label_values(&[action])
            .inc();
        self.locals.denied(client, action, &why);
        why
    }

    /// A reload replaced `client`'s principal: its members of groups it may no longer use are
    /// dropped (no frame tells the client: the protocol has none that ends a member).
    pub(super) fn principal_changed(
        &mut self,
        now: Instant,
        client: ClientId,
        principal: Arc<Principal>,
    ) {
        let members = self.locals.set_principal(client, principal.clone());
        let mut changed = BTreeSet::new();
        for (id, group) in members {
            let owner = self.catalog.live(&group).map(|d| d.owner.clone());
            if owner.is_some_and(|o| !principal.may_use(&o)) {
                self.locals.leave(client, id);
                tracing::info!(
                    client,
                    principal = %principal.name,
                    member = id,
                    %group,
                    "member dropped: its principal may no longer use the group"
                );
                changed.insert(group);
            }
        }
        for g in changed {
            self.members_changed(now, &g);
        }
    }
}
