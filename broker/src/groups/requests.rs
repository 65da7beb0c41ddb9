//! Clients' group requests: create, remove, list, describe, join, leave, publish. Each is
//! checked against the client's principal (see `owners`) before it does anything.

use std::collections::BTreeSet;
use std::time::Instant;

use palio_filter::Expr as Filter;
use palio_protocol::{ClientFrame, ErrorCode, GroupInfo, ServerFrame, valid_group_name};
use palio_topology::BrokerId;
use palio_topology::group::{Order, VClock};

use super::bounds::{MAX_GROUP_MEMBERS, OverLimit};
use super::core::Msg;
use super::{REPLICAS, Task, now_ms, refuse};
use crate::router::ClientId;
use crate::wire::{GroupDecl, GroupPeer};

impl Task {
    pub(super) fn request(&mut self, now: Instant, client: ClientId, frame: ClientFrame) {
        let answer = match frame {
            ClientFrame::GroupCreate {
                request,
                name,
                order,
            } => self.create(now, client, request, name, &order),
            ClientFrame::GroupRemove { request, name } => match self.catalog.live(&name).cloned() {
                None => refuse(
                    request,
                    ErrorCode::GroupNotFound,
                    format!("no group {name:?}"),
                ),
                Some(mut d) => match self.check_use(client, &name) {
                    Err(why) => refuse(request, ErrorCode::PermissionDenied, why),
                    Ok(()) => {
                        d.removed = true;
                        match self.take_decl(now, d, None) {
                            Ok(()) => ServerFrame::Done { request },
                            Err(e) => refuse(request, ErrorCode::LimitExceeded, e.why),
                        }
                    }
                },
            },
            ClientFrame::GroupList { request } => {
                // Only the groups the client may use (an admin: every group).
                let principal = self.locals.principal(client);
                let names: Vec<String> = self
                    .catalog
                    .live_groups()
                    .filter(|d| principal.is_some_and(|p| p.may_use(&d.owner)))
                    .map(|d| d.name.clone())
                    .collect();
                let groups = names.iter().filter_map(|n| self.info(n)).collect();
                ServerFrame::Groups { request, groups }
            }
            ClientFrame::GroupInfo { request, name } => match self.catalog.live(&name) {
                None => refuse(
                    request,
                    ErrorCode::GroupNotFound,
                    format!("no group {name:?}"),
                ),
                Some(_) => match self.check_use(client, &name) {
                    Err(why) => refuse(request, ErrorCode::PermissionDenied, why),
                    Ok(()) => ServerFrame::Groups {
                        request,
                        groups: self.info(&name).into_iter().collect(),
                    },
                },
            },
            ClientFrame::GroupJoin {
                request,
                group,
                filter,
            } => self.join(now, client, request, &group, filter.as_deref()),
            ClientFrame::GroupLeave { request, member } => {
                if let Some(g) = self.locals.leave(client, member) {
                    self.members_changed(now, &g);
                }
                ServerFrame::Done { request }
            }
            ClientFrame::GroupPublish {
                group,
                seq,
                deps,
                attributes,
                payload,
            } => {
                let msg = Msg {
                    attributes,
                    payload,
                };
                let Err((code, message)) = self.publish(now, client, &group, seq, deps, msg) else {
                    return;
                };
                ServerFrame::GroupPublishFailed {
                    group,
                    seq,
                    code,
                    message,
                }
            }
            _ => return,
        };
        self.locals.send(client, answer, 256);
    }

    /// Hands a publication to its group's core, if the group is served here, the client may
    /// use it and its principal may publish it.
    fn publish(
        &mut self,
        now: Instant,
        client: ClientId,
        group: &str,
        seq: u64,
        deps: Option<palio_protocol::Clock>,
        msg: Msg,
    ) -> Result<(), (ErrorCode, String)> {
        if let Some(why) = &self.failed {
            return Err((ErrorCode::StoreUnavailable, why.clone()));
        }
        let not_found = || (ErrorCode::GroupNotFound, format!("no group {group:?}"));
        if self.catalog.live(group).is_none() || !self.cores.contains_key(group) {
            return Err(not_found());
        }
        self.check_use(client, group)
            .map_err(|why| (ErrorCode::PermissionDenied, why))?;
        if !self
            .locals
            .principal(client)
            .is_some_and(|p| p.may_publish(&msg.attributes))
        {
            let why = format!(
                "the publication to group {group:?} is outside the principal's publish permission"
            );
            return Err((
                ErrorCode::PermissionDenied,
                self.deny(client, "publish", why),
            ));
        }
        // Only an accepted publication names a producer (the table holds no key for groups
        // that do not exist, or that the client may not use).
        let key = self.locals.producer(group, &self.name, client);
        let Some((_, core)) = self.cores.get_mut(group) else {
            return Err(not_found());
        };
        let mut clock = VClock::default();
        for (b, n) in deps.unwrap_or_default() {
            clock.set(BrokerId(b), n);
        }
        core.publish(now, &key, seq, &clock, msg);
        Ok(())
    }

    pub(super) fn create(
        &mut self,
        now: Instant,
        client: ClientId,
        request: u64,
        name: String,
        order: &str,
    ) -> ServerFrame {
        if !valid_group_name(&name) {
            return refuse(
                request,
                ErrorCode::ProtocolViolation,
                format!("invalid group name {name:?}: 1-64 letters, digits, '_', '-' or '.'"),
            );
        }
        let order: Order = match order.parse() {
            Ok(o) => o,
            Err(e) => return refuse(request, ErrorCode::ProtocolViolation, format!("{e}")),
        };
        if let Some(d) = self.catalog.live(&name) {
            return refuse(
                request,
                ErrorCode::GroupExists,
                format!("group {name:?} exists already ({} order)", d.order),
            );
        }
        let voters = match order {
            Order::Total => {
                let others: BTreeSet<BrokerId> = self
                    .hops
                    .keys()
                    .copied()
                    .filter(|b| *b != self.me)
                    .collect();
                std::iter::once(self.me)
                    .chain(others.into_iter().take(REPLICAS - 1))
                    .collect()
            }
            _ => Vec::new(),
        };
        let owner = self
            .locals
            .principal(client)
            .map_or_else(String::new, |p| p.name.to_string());
        let d = GroupDecl {
            generation: now_ms().max(self.catalog.generation(&name) + 1),
            name,
            order,
            voters,
            creator: self.me,
            removed: false,
            owner,
        };
        match self.take_decl(now, d, None) {
            Ok(()) => ServerFrame::Done { request },
            Err(e) => refuse(request, ErrorCode::LimitExceeded, e.why),
        }
    }

    pub(super) fn info(&self, name: &str) -> Option<GroupInfo> {
        let d = self.catalog.live(name)?;
        // What this broker's core knows, or the latest announcement, whichever is newer.
        let sequencing = match (
            self.cores.get(name).and_then(|(_, c)| c.sequencing()),
            self.catalog.sequencer(name),
        ) {
            (Some((e, Some(s))), Some((ae, _))) if e >= ae => Some((e, Some(s))),
            (_, Some((ae, s))) => Some((ae, Some(s))),
            (own, None) => own,
        };
        Some(GroupInfo {
            name: d.name.clone(),
            order: d.order.as_str().to_owned(),
            members: self.catalog.members(name),
            epoch: sequencing.map(|(e, _)| e),
            sequencer: sequencing
                .and_then(|(_, s)| s)
                .map(|s| self.catalog.name_of(s)),
            replicas: d.voters.iter().map(|v| self.catalog.name_of(*v)).collect(),
            creator: self.catalog.name_of(d.creator),
            owner: d.owner.clone(),
        })
    }

    pub(super) fn join(
        &mut self,
        now: Instant,
        client: ClientId,
        request: u64,
        group: &str,
        filter: Option<&str>,
    ) -> ServerFrame {
        if self.catalog.live(group).is_none() {
            return refuse(
                request,
                ErrorCode::GroupNotFound,
                format!("no group {group:?}"),
            );
        }
        if let Err(why) = self.check_use(client, group) {
            return refuse(request, ErrorCode::PermissionDenied, why);
        }
        let filter = match filter.map(Filter::parse).transpose() {
            Ok(f) => f,
            Err(e) => return refuse(request, ErrorCode::InvalidFilter, e.to_string()),
        };
        let listed = self.locals.count(group) + self.catalog.members_elsewhere(group, self.me);
        if listed >= MAX_GROUP_MEMBERS {
            let e = OverLimit::new(
                "group_members",
                format!("group {group:?} has {listed} members, the most a group may have"),
            );
            self.over_limit(&e);
            return refuse(request, ErrorCode::LimitExceeded, e.why);
        }
        let member = self.locals.join(client, group, filter);
        self.members_changed(now, group);
        ServerFrame::Joined { request, member }
    }

    /// This broker's members of `group` changed: the core reads or not, the overlay is told.
    pub(super) fn members_changed(&mut self, now: Instant, group: &str) {
        let reading = self.locals.has_members(group);
        if let Some((_, core)) = self.cores.get_mut(group) {
            core.set_reading(now, reading);
        }
        self.version = now_ms().max(self.version + 1);
        let members = self.locals.names(group, &self.name);
        if let Err(e) = self
            .catalog
            .merge_members(group, self.me, self.version, members.clone())
        {
            // Other brokers' lists grew meanwhile: the peers decide for themselves.
            self.over_limit(&e);
        }
        self.flood(
            GroupPeer::Members {
                group: group.to_owned(),
                broker: self.me,
                version: self.version,
                members,
            },
            None,
        );
    }
}
