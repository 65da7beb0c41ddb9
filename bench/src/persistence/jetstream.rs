//! The JetStream side: a `nats-server -js` child process with file storage, one stream on one
//! subject, a durable pull consumer with explicit acks, and `async-nats` clients.
//!
//! The server is configured by a file in the run's directory: loopback, a random port (read
//! back from the server's log line), the store under the run's directory and, for
//! [`JetStreamSync::Always`], `sync_interval: always`. Servers before 2.10 do not know that
//! setting and refuse to start, which the run reports.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, context::ContextBuilder, stream};
use futures_util::StreamExt;

use super::{
    ATTRIBUTES, Drain, JetStreamSync, PUBLISH_WINDOW, PersistenceConfig, PersistenceReport, Phase,
    System, Tally, payload, pipeline, remaining, share,
};

/// The stream, its subject and the consumer.
const STREAM: &str = "BENCH";
const SUBJECT: &str = "bench.persist";
const CONSUMER: &str = "bench";

/// A fetch that brings nothing for this long means the consumer is stuck.
const STALL: Duration = Duration::from_secs(10);

pub(super) async fn run(
    config: &PersistenceConfig,
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<PersistenceReport> {
    let version = server_version(&config.nats_server)?;
    let server = NatsServer::start(&config.nats_server, dir, config.jetstream_sync)?;
    progress(&format!(
        "nats-server {version} on {} (sync {:?})",
        server.addr, config.jetstream_sync
    ));
    let admin = async_nats::connect(&server.addr).await?;
    let js = jetstream::new(admin.clone());
    let stream = js
        .create_stream(stream::Config {
            name: STREAM.into(),
            subjects: vec![SUBJECT.into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .context("creating the stream")?;
    let mut consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(CONSUMER.into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .context("creating the consumer")?;

    // Phase 1: every producer on its own connection, connected before the clock starts.
    let mut contexts = Vec::new();
    for _ in 0..config.producers {
        let client = async_nats::connect(&server.addr).await?;
        contexts.push(
            ContextBuilder::new()
                .max_ack_inflight(PUBLISH_WINDOW)
                .build(client),
        );
    }
    progress(&format!(
        "publishing {} messages from {} producer(s)",
        config.count, config.producers
    ));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (p, ctx) in contexts.into_iter().enumerate() {
        let n = share(config.count, config.producers, p);
        let bytes = config.payload_bytes;
        tasks.push(tokio::spawn(async move {
            pipeline::publish(
                n,
                PUBLISH_WINDOW,
                |seq| {
                    let ctx = &ctx;
                    async move {
                        let body = payload(bytes, p, seq).into();
                        Ok(ctx
                            .publish_with_headers(SUBJECT, headers(p, seq), body)
                            .await?)
                    }
                },
                |seq, ack: jetstream::publish::PublishAck| {
                    if ack.duplicate {
                        bail!("publication {seq} acked as a duplicate");
                    }
                    Ok(())
                },
            )
            .await
        }));
    }
    for t in tasks {
        t.await.context("a producer task")??;
    }
    let publish = Phase::since(start, config.count);
    progress(&format!(
        "published in {:.2} s: {:.0} msgs/s",
        publish.secs, publish.msgs_per_s
    ));
    let stored = stream.get_info().await?.state.messages;
    if stored != config.count {
        bail!(
            "the stream holds {stored} messages, {} were acked",
            config.count
        );
    }

    // Phase 2: drain with fetch, then acks (plain for all but the last, which is confirmed).
    let expected: Vec<u64> = (0..config.producers)
        .map(|p| share(config.count, config.producers, p))
        .collect();
    let mut tally = Tally::new(&expected);
    let mut fetches = 0u64;
    let (mut fetch_secs, mut ack_secs) = (0.0, 0.0);
    let mut idle_since = Instant::now();
    let start = Instant::now();
    while tally.consumed() < config.count {
        let t = Instant::now();
        let mut batch = consumer
            .batch()
            .max_messages(config.batch.min(remaining(&tally, config.count)))
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .context("fetching")?;
        fetches += 1;
        let mut last: Option<jetstream::Message> = None;
        let mut waiting = t;
        while let Some(m) = {
            let next = batch.next().await;
            fetch_secs += waiting.elapsed().as_secs_f64();
            next
        } {
            let m = m.map_err(|e| anyhow::anyhow!("fetching: {e}"))?;
            let (producer, seq) = identify(&m)?;
            tally.record(producer, seq)?;
            if let Some(prev) = last.replace(m) {
                prev.ack()
                    .await
                    .map_err(|e| anyhow::anyhow!("acking: {e}"))?;
            }
            waiting = Instant::now();
        }
        match last {
            Some(m) => {
                let t = Instant::now();
                m.double_ack()
                    .await
                    .map_err(|e| anyhow::anyhow!("acking: {e}"))?;
                ack_secs += t.elapsed().as_secs_f64();
                idle_since = Instant::now();
            }
            None if idle_since.elapsed() > STALL => bail!(
                "the consumer got nothing for {STALL:?} with {} of {} consumed",
                tally.consumed(),
                config.count
            ),
            None => {}
        }
    }
    let consume = Phase::since(start, config.count);
    let consumed = tally.finish()?;
    progress(&format!(
        "consumed in {:.2} s: {:.0} msgs/s ({fetches} fetches)",
        consume.secs, consume.msgs_per_s
    ));
    settled(&mut consumer).await?;
    admin.flush().await?;
    drop(server);
    Ok(PersistenceReport::new(
        System::Jetstream,
        match config.jetstream_sync {
            JetStreamSync::Default => "jetstream".into(),
            JetStreamSync::Always => "jetstream-sync-always".into(),
        },
        version,
        match config.jetstream_sync {
            JetStreamSync::Default => "write to the file store's buffer (sync every 2 min)".into(),
            JetStreamSync::Always => "write and fsync (sync_interval: always)".into(),
        },
        config,
        &publish,
        Drain {
            phase: consume,
            consumed,
            fetches,
            fetch_secs,
            ack_secs,
        },
    ))
}

/// The four headers of message `seq` of producer `p`.
fn headers(p: usize, seq: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ATTRIBUTES[0], "bench");
    h.insert(ATTRIBUTES[1], p.to_string().as_str());
    h.insert(ATTRIBUTES[2], seq.to_string().as_str());
    h.insert(ATTRIBUTES[3], "palio-bench");
    h
}

/// `(producer, seq)` from a message's headers.
fn identify(m: &jetstream::Message) -> anyhow::Result<(u64, u64)> {
    let h = m.headers.as_ref().context("a message without headers")?;
    let number = |name: &str| -> anyhow::Result<u64> {
        h.get(name)
            .and_then(|v| v.as_str().parse().ok())
            .with_context(|| format!("a message without a numeric {name} header"))
    };
    Ok((number(ATTRIBUTES[1])?, number(ATTRIBUTES[2])?))
}

/// Waits until the server has processed every ack: nothing pending, nothing unacked, nothing
/// redelivered (not timed: the last batch's double ack was confirmed already).
async fn settled(consumer: &mut consumer::PullConsumer) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = consumer.info().await?;
        if info.num_redelivered != 0 {
            bail!("{} messages were redelivered", info.num_redelivered);
        }
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "after draining, the consumer has {} pending and {} unacked",
                info.num_pending,
                info.num_ack_pending
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `nats-server --version`, e.g. `v2.9.10`.
fn server_version(exe: &Path) -> anyhow::Result<String> {
    let out = Command::new(exe)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", exe.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// A `nats-server` child process, killed on drop.
struct NatsServer {
    child: Child,
    /// `HOST:PORT` of its client listener.
    addr: String,
}

impl NatsServer {
    fn start(exe: &Path, dir: &Path, sync: JetStreamSync) -> anyhow::Result<Self> {
        let store = dir.join("jetstream");
        let conf = dir.join("nats.conf");
        let sync_line = match sync {
            JetStreamSync::Default => "",
            JetStreamSync::Always => "  sync_interval: always\n",
        };
        std::fs::write(
            &conf,
            format!(
                "host: 127.0.0.1\nport: -1\njetstream {{\n  store_dir: {:?}\n{sync_line}}}\n",
                store.display().to_string()
            ),
        )?;
        let mut child = Command::new(exe)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stderr = child.stderr.take().context("the server's stderr")?;
        let (tx, rx) = std_mpsc::channel::<String>();
        // Reads the log to its end (so the server never blocks on a full pipe), passing on
        // each line until the listener's address has been seen.
        std::thread::spawn(move || {
            let mut found = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !found {
                    found = line.contains("Listening for client connections on");
                    let _ = tx.send(line);
                }
            }
        });
        let mut server = NatsServer {
            child,
            addr: String::new(),
        };
        let mut log = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.addr.is_empty() {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(line) => match line.split("Listening for client connections on ").nth(1) {
                    Some(addr) => server.addr = addr.trim().to_owned(),
                    None => log.push(line),
                },
                Err(_) => bail!(
                    "nats-server did not start listening; its log:\n{}",
                    log.join("\n")
                ),
            }
        }
        Ok(server)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
