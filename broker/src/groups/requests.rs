//! Clients' group requests: create, remove, list, describe, join, leave, publish.

use std::collections::BTreeSet;
use std::time::Instant;

use palio_filter::Expr as Filter;
use palio_protocol::{ClientFrame, ErrorCode, GroupInfo, ServerFrame, valid_group_name};
use palio_topology::BrokerId;
use palio_topology::group::{Order, VClock};

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
            } => self.create(now, request, name, &order),
            ClientFrame::GroupRemove { request, name } => match self.catalog.live(&name).cloned() {
                None => refuse(
                    request,
                    ErrorCode::GroupNotFound,
                    format!("no group {name:?}"),
                ),
                Some(mut d) => {
                    d.removed = true;
                    self.take_decl(now, d, None);
                    ServerFrame::Done { request }
                }
            },
            ClientFrame::GroupList { request } => {
                let names: Vec<String> =
                    self.catalog.live_groups().map(|d| d.name.clone()).collect();
                let groups = names.iter().filter_map(|n| self.info(n)).collect();
                ServerFrame::Groups { request, groups }
            }
            ClientFrame::GroupInfo { request, name } => match self.info(&name) {
                Some(g) => ServerFrame::Groups {
                    request,
                    groups: vec![g],
                },
                None => refuse(
                    request,
                    ErrorCode::GroupNotFound,
                    format!("no group {name:?}"),
                ),
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
                // Only a publication to a group this broker serves names a producer (the
                // table holds no key for groups that do not exist).
                let key = (self.failed.is_none() && self.cores.contains_key(&group))
                    .then(|| self.locals.producer(&group, &self.name, client));
                let refusal = match (&self.failed, self.cores.get_mut(&group), key) {
                    (Some(why), _, _) => Some((ErrorCode::StoreUnavailable, why.clone())),
                    (None, Some((_, core)), Some(key)) => {
                        let mut clock = VClock::default();
                        for (b, n) in deps.unwrap_or_default() {
                            clock.set(BrokerId(b), n);
                        }
                        core.publish(
                            now,
                            &key,
                            seq,
                            &clock,
                            Msg {
                                attributes,
                                payload,
                            },
                        );
                        None
                    }
                    (None, _, _) => Some((ErrorCode::GroupNotFound, format!("no group {group:?}"))),
                };
                match refusal {
                    None => return,
                    Some((code, message)) => ServerFrame::GroupPublishFailed {
                        group,
                        seq,
                        code,
                        message,
                    },
                }
            }
            _ => return,
        };
        self.locals.send(client, answer, 256);
    }

    pub(super) fn create(
        &mut self,
        now: Instant,
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
        let d = GroupDecl {
            generation: now_ms().max(self.catalog.generation(&name) + 1),
            name,
            order,
            voters,
            creator: self.me,
            removed: false,
        };
        self.take_decl(now, d, None);
        ServerFrame::Done { request }
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
        let filter = match filter.map(Filter::parse).transpose() {
            Ok(f) => f,
            Err(e) => return refuse(request, ErrorCode::InvalidFilter, e.to_string()),
        };
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
        self.catalog
            .merge_members(group, self.me, self.version, members.clone());
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
