//! Carrying out what the cores ask: records synced before what follows them, bodies sent,
//! deliveries, acks and gaps handed to local clients.

use palio_topology::BrokerId;
use palio_topology::group::Effect;

use super::Task;
use super::core::Msg;

impl Task {
    /// Drains every core's effects and carries them out: the records first (one sync), then
    /// the rest in order.
    pub(super) fn drive(&mut self) {
        let names: Vec<String> = self.cores.keys().cloned().collect();
        for group in names {
            let mut effects = Vec::new();
            let generation = match self.cores.get_mut(&group) {
                Some((generation, core)) => {
                    while let Some(e) = core.poll_effect() {
                        effects.push(e);
                    }
                    *generation
                }
                None => continue,
            };
            self.announce(&group);
            if effects.is_empty() {
                continue;
            }
            // What comes before the first record goes out at once (a Raft leader's appends,
            // so they travel while its disk syncs). Then every record of the run is appended
            // and synced with one fdatasync, and only then is the rest carried out, in order:
            // nothing that follows a record is done before the record is durable.
            let first = effects
                .iter()
                .position(|e| matches!(e, Effect::Persist { .. }))
                .unwrap_or(effects.len());
            let mut rest = effects.split_off(first);
            for e in effects {
                if !self.synced() {
                    break;
                }
                self.carry_out(&group, e);
            }
            for e in &mut rest {
                if let Effect::Persist { record } = e
                    && self.failed.is_none()
                    && let Err(err) = self
                        .journal
                        .core(&group, generation, std::mem::take(record))
                {
                    self.fail(err.to_string());
                }
            }
            if !self.synced() {
                // Nothing that followed an unsynced record may be carried out.
                continue;
            }
            for e in rest {
                self.carry_out(&group, e);
            }
        }
    }

    /// Makes what the journal has appended durable, if anything; false if that failed (or
    /// the journal failed before).
    pub(super) fn synced(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        match self.journal.sync() {
            Ok(true) => {
                self.metrics.group_log_syncs.inc();
                true
            }
            Ok(false) => true,
            Err(err) => {
                self.fail(err.to_string());
                false
            }
        }
    }

    pub(super) fn carry_out(&mut self, group: &str, effect: Effect<Msg>) {
        let order = self
            .catalog
            .live(group)
            .map_or("unknown", |d| d.order.as_str());
        match &effect {
            Effect::Deliver(_) => self
                .metrics
                .group_delivered
                .with_label_values(&[order])
                .inc(),
            Effect::Gap { count, .. } => self
                .metrics
                .group_gaps
                .with_label_values(&[order])
                .inc_by(*count),
            _ => {}
        }
        match effect {
            Effect::Persist { .. } => {}
            Effect::Send { to, body } => self.send_body(group.to_owned(), self.me, to, body),
            Effect::Broadcast { body } => {
                let all: Vec<BrokerId> = self
                    .hops
                    .keys()
                    .copied()
                    .filter(|b| *b != self.me)
                    .collect();
                for to in all {
                    self.send_body(group.to_owned(), self.me, to, body.clone());
                }
            }
            Effect::Deliver(d) => self.locals.deliver(group, &d),
            Effect::Acked { producer, through } => {
                let new = self.locals.acked(group, &producer, through);
                self.metrics
                    .group_acked
                    .with_label_values(&[order])
                    .inc_by(new);
            }
            Effect::Gap { count, .. } => self.locals.gap(group, count),
        }
    }
}
