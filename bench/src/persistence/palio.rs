//! The Palio side: a broker in this process on a runtime of its own (or a `palio-broker`
//! process, as `compare` runs it), one durable queue whose
//! filter matches every benchmark message, persistent producers and a pull consumer.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use palio::filter::Value;
use palio::{Client, ConnectOptions, Notification, ProducerOptions, QueueOptions};
use palio_broker::{Server, Settings};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use crate::pubsub::processes::Broker;

use super::{
    ATTRIBUTES, Drain, PUBLISH_WINDOW, PersistenceConfig, PersistenceReport, Phase, System, Tally,
    payload, pipeline, remaining, share,
};

/// The queue.
const QUEUE: &str = "bench";

/// A fetch that brings nothing for this long means the consumer is stuck.
const STALL: Duration = Duration::from_secs(10);

pub(super) fn run(
    rt: &Runtime,
    config: &PersistenceConfig,
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<PersistenceReport> {
    if let Some(bin) = &config.palio_broker_bin {
        return rt.block_on(async {
            let broker = Broker::start(bin, 0, dir, &dir.join("tls"), None).await?;
            progress(&format!("palio-broker process on {}", broker.quic));
            let opts = ConnectOptions::new(&broker.quic).tls_dir(dir.join("tls"));
            let report = bench(config, &opts, progress).await;
            broker.stop().await;
            report
        });
    }
    // The broker gets worker threads of its own, as a separate process would.
    let broker_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("broker")
        .enable_all()
        .build()?;
    let tls = dir.join("tls");
    let mut settings = Settings {
        id: Some("bench".into()),
        listen: "127.0.0.1:0".parse().context("address")?,
        admin: None,
        data_dir: dir.join("broker"),
        ..Settings::default()
    };
    settings.tls.dir = Some(tls.clone());
    let server = broker_rt.block_on(Server::bind(settings))?;
    let addr = server.local_addr().context("bound")?.to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = broker_rt.spawn(server.run(async move {
        let _ = stopped.await;
    }));
    progress(&format!("palio broker on {addr}"));
    let opts = ConnectOptions::new(addr).tls_dir(&tls);
    let report = rt.block_on(bench(config, &opts, progress));
    let _ = stop.send(());
    let _ = broker_rt.block_on(running);
    report
}

async fn bench(
    config: &PersistenceConfig,
    opts: &ConnectOptions,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<PersistenceReport> {
    let admin = Client::connect(opts.clone()).await?;
    admin
        .queue_add(QUEUE, "type = 'bench'", QueueOptions::default())
        .await
        .context("adding the queue")?;

    // Phase 1: every producer on its own connection, named before the clock starts.
    let mut producers = Vec::new();
    for p in 0..config.producers {
        let client = Client::connect(opts.clone()).await?;
        let producer = client
            .producer_with(
                &format!("bench-{p}"),
                ProducerOptions::new().max_in_flight(PUBLISH_WINDOW),
            )
            .await
            .context("naming a producer")?;
        producers.push((client, producer));
    }
    progress(&format!(
        "publishing {} messages from {} producer(s)",
        config.count, config.producers
    ));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (p, (client, producer)) in producers.into_iter().enumerate() {
        let n = share(config.count, config.producers, p);
        let bytes = config.payload_bytes;
        let first = producer.next_seq();
        tasks.push(tokio::spawn(async move {
            let acked = pipeline::publish(
                n,
                PUBLISH_WINDOW,
                |seq| {
                    let producer = &producer;
                    async move { Ok(producer.send(notification(bytes, p, seq)?).await?) }
                },
                move |seq, acked: palio::Published| {
                    if acked.seq() != first + seq {
                        bail!("publication {seq} acked as sequence {}", acked.seq());
                    }
                    if !acked.stored() {
                        bail!("publication {seq} matched no queue");
                    }
                    Ok(())
                },
            )
            .await;
            drop(producer);
            client.close().await;
            acked
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
    let info = admin.queue_info(QUEUE).await?;
    if info.pending != config.count {
        bail!(
            "the queue holds {} messages, {} were acked",
            info.pending,
            config.count
        );
    }

    // Phase 2: drain with fetch, then one confirmed ack for the batch.
    let batch_size = u32::try_from(config.batch).unwrap_or(u32::MAX);
    let expected: Vec<u64> = (0..config.producers)
        .map(|p| share(config.count, config.producers, p))
        .collect();
    let mut tally = Tally::new(&expected);
    let mut consumer = admin.pull(QUEUE).await.context("attaching the consumer")?;
    let mut fetches = 0u64;
    let (mut fetch_secs, mut ack_secs) = (0.0, 0.0);
    let mut idle_since = Instant::now();
    let start = Instant::now();
    while tally.consumed() < config.count {
        let t = Instant::now();
        let batch = consumer
            .fetch(
                batch_size.min(u32::try_from(remaining(&tally, config.count)).unwrap_or(u32::MAX)),
                Duration::from_secs(1),
            )
            .await
            .context("fetching")?;
        fetch_secs += t.elapsed().as_secs_f64();
        fetches += 1;
        if batch.is_empty() {
            if idle_since.elapsed() > STALL {
                bail!(
                    "the consumer got nothing for {STALL:?} with {} of {} consumed",
                    tally.consumed(),
                    config.count
                );
            }
            continue;
        }
        idle_since = Instant::now();
        let mut tags = Vec::with_capacity(batch.len());
        for m in &batch {
            if m.delivery_count() != 1 {
                bail!(
                    "message tag {} delivered {} times",
                    m.tag(),
                    m.delivery_count()
                );
            }
            tally.record(number(m.get(ATTRIBUTES[1]))?, number(m.get(ATTRIBUTES[2]))?)?;
            tags.push(m.tag());
        }
        let t = Instant::now();
        consumer.ack_many(&tags).await.context("acking")?;
        ack_secs += t.elapsed().as_secs_f64();
    }
    let consume = Phase::since(start, config.count);
    let consumed = tally.finish()?;
    progress(&format!(
        "consumed in {:.2} s: {:.0} msgs/s ({fetches} fetches)",
        consume.secs, consume.msgs_per_s
    ));
    let info = admin.queue_info(QUEUE).await?;
    if info.pending != 0 || info.unacked != 0 || info.dead_lettered != 0 {
        bail!(
            "after draining, the queue has {} pending, {} unacked, {} dead-lettered",
            info.pending,
            info.unacked,
            info.dead_lettered
        );
    }
    consumer.stop().await?;
    admin.close().await;
    Ok(PersistenceReport::new(
        System::Palio,
        "palio".into(),
        env!("CARGO_PKG_VERSION").into(),
        "group commit on disk (fdatasync)".into(),
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

/// Message `seq` of producer `p`: four attributes and the payload.
fn notification(bytes: usize, p: usize, seq: u64) -> anyhow::Result<Notification> {
    Ok(Notification::builder()
        .attr(ATTRIBUTES[0], "bench")
        .attr(ATTRIBUTES[1], i32::try_from(p)?)
        .attr(ATTRIBUTES[2], i32::try_from(seq)?)
        .attr(ATTRIBUTES[3], "palio-bench")
        .payload(payload(bytes, p, seq))
        .build()?)
}

/// A non-negative integer attribute.
fn number(v: Option<&Value>) -> anyhow::Result<u64> {
    match v {
        Some(Value::Int(i)) => Ok(u64::try_from(*i)?),
        other => bail!("a message without its numeric attribute (found {other:?})"),
    }
}
