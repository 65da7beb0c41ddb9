//! `palio group …`, `palio sub --group` and `palio pub --group`: ordered groups from scripts.
//!
//! Output contract (scripts depend on it):
//! - `group create NAME --order {fifo,causal,total}` prints `{"created": NAME, "order": ORDER}`;
//!   a group that exists exits 1 with the reason on stderr.
//! - `group ls` prints one JSON array of group objects; `group info NAME` one group object,
//!   with `name`, `order`, `members`, `creator`, `owner` (the principal that created it; empty
//!   for a group everyone may use), and for total order `epoch`, `sequencer` (the sequencer
//!   broker's `--id`) and `replicas`. `ls` lists only the groups the caller may use.
//!   A group the caller may not use exits 1 with the broker's `permission_denied` reason on
//!   stderr.
//! - `group rm NAME` prints `{"removed": NAME}`.
//! - `sub --group NAME [FILTER]` prints one JSON line per message, as `sub` does, plus
//!   `"group"`, and `"epoch"` and `"seq"` (total order) or `"clock"` (causal order). Messages
//!   lost at their origin are reported on stderr.
//! - `pub --group NAME` prints `{"published": N, "acked": M}`: acks come in publish order, so
//!   the acked messages are the first M; exit status 1 unless every one was acked.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::connection::Connection;
use super::pubsub::{Sub, Template, before, deadline, one_request, runtime};
use super::refusal::said_once;
use crate::{Client, Error, ErrorCode, GroupEvent, GroupInfo, GroupOrder};

/// The ordering modes, as `--order` takes them.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum OrderArg {
    /// Per publisher.
    Fifo,
    /// Happened-before (vector clocks over brokers).
    Causal,
    /// One order for every member: (epoch, seq) from a replicated sequencer.
    Total,
}

impl From<OrderArg> for GroupOrder {
    fn from(o: OrderArg) -> Self {
        match o {
            OrderArg::Fifo => GroupOrder::Fifo,
            OrderArg::Causal => GroupOrder::Causal,
            OrderArg::Total => GroupOrder::Total,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum GroupCommand {
    /// Create an ordered group; prints {"created": NAME, "order": ORDER}.
    Create {
        #[command(flatten)]
        conn: Connection,
        /// The group's name: 1–64 ASCII letters, digits, '_', '-' and '.'.
        name: String,
        /// The ordering mode, fixed for the group's life.
        #[arg(long, value_enum)]
        order: OrderArg,
    },
    /// Print the network's groups the caller may use as one JSON array of objects (as in
    /// `info`).
    Ls {
        #[command(flatten)]
        conn: Connection,
    },
    /// Print one group as a JSON object: name, order, members, creator, owner, and for total
    /// order epoch, sequencer (a broker's --id) and replicas.
    Info {
        #[command(flatten)]
        conn: Connection,
        /// The group's name.
        name: String,
    },
    /// Remove a group; prints {"removed": NAME}.
    Rm {
        #[command(flatten)]
        conn: Connection,
        /// The group's name.
        name: String,
    },
}

fn info_json(g: &GroupInfo) -> serde_json::Value {
    let mut j = json!({
        "name": g.name,
        "order": g.order,
        "members": g.members,
        "creator": g.creator,
        "owner": g.owner,
    });
    if g.order == "total" {
        j["epoch"] = json!(g.epoch);
        j["sequencer"] = json!(g.sequencer);
        j["replicas"] = json!(g.replicas);
    }
    j
}

pub(super) fn run(
    cmd: GroupCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    if let GroupCommand::Create { name, .. } = &cmd
        && !palio_protocol::valid_group_name(name)
    {
        writeln!(
            err,
            "palio: invalid group name {name:?}: 1–64 ASCII letters, digits, '_', '-' and '.'"
        )?;
        return Ok(ExitCode::from(2));
    }
    let conn = match &cmd {
        GroupCommand::Create { conn, .. }
        | GroupCommand::Ls { conn }
        | GroupCommand::Info { conn, .. }
        | GroupCommand::Rm { conn, .. } => conn,
    };
    one_request(conn, "palio-group", out, async |client| {
        request(client, &cmd).await
    })
}

async fn request(client: &Client, cmd: &GroupCommand) -> anyhow::Result<serde_json::Value> {
    Ok(match cmd {
        GroupCommand::Create { name, order, .. } => {
            let order = GroupOrder::from(*order);
            client
                .group_create(name, order)
                .await
                .map_err(|e| explain(e, name))?;
            json!({ "created": name, "order": order.as_str() })
        }
        GroupCommand::Ls { .. } => {
            let groups = client.group_list().await?;
            serde_json::Value::Array(groups.iter().map(info_json).collect())
        }
        GroupCommand::Info { name, .. } => info_json(
            &client
                .group_info(name)
                .await
                .map_err(|e| explain(e, name))?,
        ),
        GroupCommand::Rm { name, .. } => {
            client
                .group_remove(name)
                .await
                .map_err(|e| explain(e, name))?;
            json!({ "removed": name })
        }
    })
}

/// The broker's refusal, said once, with a plain sentence for the common cases.
fn explain(e: Error, name: &str) -> anyhow::Error {
    said_once(e, |code| match code {
        ErrorCode::GroupNotFound => Some(format!("no group named {name:?}")),
        ErrorCode::GroupExists => Some(format!("group {name:?} exists already")),
        _ => None,
    })
}

/// `palio sub --group NAME [FILTER]`.
pub(super) fn run_group_sub(
    cmd: Sub,
    group: String,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    if let Some(f) = &cmd.filter
        && let Err(e) = palio_filter::Filter::new(f)
    {
        writeln!(err, "palio: invalid filter: {e}")?;
        return Ok(ExitCode::from(2));
    }
    let rt = runtime()?;
    rt.block_on(async {
        let client = cmd.conn.connect("palio-sub").await?;
        let mut member = client
            .group_join(&group, cmd.filter.as_deref())
            .await
            .map_err(|e| explain(e, &group))?;
        writeln!(
            err,
            "palio: joined group {group:?} as member {} at {}",
            member.member(),
            client.broker().broker
        )?;
        err.flush()?;
        let deadline = deadline(cmd.timeout);
        let mut received = 0u64;
        let mut timed_out = false;
        while cmd.count.is_none_or(|c| received < c) {
            let Ok(next) = before(deadline, member.next()).await else {
                timed_out = true;
                break;
            };
            match next {
                None => match client.close_reason() {
                    Some(e) => anyhow::bail!("the connection to the broker closed: {e}"),
                    None => anyhow::bail!("the member's stream ended"),
                },
                Some(GroupEvent::Gap { count }) => {
                    writeln!(
                        err,
                        "palio: {count} message(s) of group {group:?} were lost at their origin"
                    )?;
                }
                Some(GroupEvent::Message(m)) => {
                    super::payload::print(out, cmd.raw, m.notification.payload(), || {
                        let mut line = m.notification.to_json();
                        line["group"] = json!(m.group);
                        if let (Some(epoch), Some(seq)) = (m.epoch, m.seq) {
                            line["epoch"] = json!(epoch);
                            line["seq"] = json!(seq);
                        }
                        if let Some(clock) = &m.clock {
                            line["clock"] = json!(clock);
                        }
                        line
                    })?;
                    received += 1;
                }
            }
        }
        client.close().await;
        Ok(if timed_out && cmd.count.is_some() {
            writeln!(err, "palio: timed out after {received} messages")?;
            ExitCode::from(3)
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// How long `pub --group` waits for acks, for room among the unacknowledged publications and
/// for the last ones (a sequencer failover takes a few seconds, more on a loaded machine).
const ACK_WAIT: Duration = Duration::from_secs(60);

/// `palio pub --group NAME`.
pub(super) fn run_group_pub(
    conn: &Connection,
    group: &str,
    producer: Option<&str>,
    template: &Template,
    count: Option<u32>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        let client = conn.connect("palio-pub").await?;
        if let Some(p) = producer {
            // The connection's producer name; the broker keys the group's de-duplication on it.
            client.producer(p).await?;
        }
        let mut publisher = client.group_publisher(group);
        let mut published = 0u64;
        let mut failure: Option<anyhow::Error> = None;
        let seqs: Vec<Option<u32>> = match count {
            None => vec![None],
            Some(n) => (0..n).map(Some).collect(),
        };
        for seq in seqs {
            // Room among the unacknowledged publications, waited for here with ACK_WAIT:
            // `send` would wait only the connection's request timeout (10 s), and a failover
            // while the window is full would then fail the command.
            let oldest = (published + 1).saturating_sub(crate::DEFAULT_MAX_IN_FLIGHT as u64);
            if oldest > 0
                && let Err(e) = publisher.wait_acked(oldest, ACK_WAIT).await
            {
                failure = Some(explain(e, group));
                break;
            }
            match publisher.send(template.build(seq)?).await {
                Ok(_) => published += 1,
                Err(e) => {
                    failure = Some(explain(e, group));
                    break;
                }
            }
        }
        if failure.is_none()
            && published > 0
            && let Err(e) = publisher.wait_acked(published, ACK_WAIT).await
        {
            failure = Some(explain(e, group));
        }
        let acked = publisher.acked().min(published);
        client.close().await;
        writeln!(out, "{}", json!({ "published": published, "acked": acked }))?;
        out.flush()?;
        Ok(match failure {
            None => ExitCode::SUCCESS,
            Some(e) => {
                writeln!(err, "palio: {e:#}")?;
                ExitCode::from(1)
            }
        })
    })
}
