//! The three clients a comparison worker can be: Palio's SDK, `async-nats` and `rumqttc`, each
//! as a [`Sink`] (publish, then settle) and a [`Source`] (the next message's send time and
//! `seq`). Each is used the way its own documentation shows, with default settings.
//!
//! - NATS: `publish` buffers, `flush` waits until the server has everything.
//! - MQTT: QoS 0 (best effort, like NATS core and Palio's publish). A publisher is settled when
//!   its event loop has written every publication to the socket and the broker has acked one
//!   QoS 1 marker published after them (on a topic nobody subscribes to): a broker handles a
//!   connection's packets in order, so it has read everything before the marker.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{Notify, mpsc};

use super::wire;
use crate::pubsub::{decode, notification};

/// The MQTT topic of the settle marker (no subscriber matches it).
const SETTLE_TOPIC: &str = "palio-bench/settle";

/// How long a client may take to connect.
const CONNECT: Duration = Duration::from_secs(30);

/// Where a worker connects, and with which client.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A Palio broker (QUIC), with the development PKI directory.
    Palio {
        /// `HOST:PORT`.
        server: String,
        /// The brokers' `--tls-dir`.
        tls_dir: PathBuf,
    },
    /// A NATS server, over TLS when `ca` is given.
    Nats {
        /// `HOST:PORT`.
        server: String,
        /// The CA that signed the server's certificate.
        ca: Option<PathBuf>,
    },
    /// An MQTT broker.
    Mqtt {
        /// `HOST:PORT`.
        server: String,
    },
}

/// A connected publisher.
pub enum Sink {
    /// Palio's SDK.
    Palio(palio::Client),
    /// `async-nats`.
    Nats(async_nats::Client, String),
    /// `rumqttc`, its event loop driven by a task of its own.
    Mqtt(MqttPublisher),
}

/// An MQTT client whose event loop counts what it has written.
pub struct MqttPublisher {
    client: AsyncClient,
    topic: String,
    queued: u64,
    written: Arc<AtomicU64>,
    progress: Arc<Notify>,
    acks: Arc<AtomicU64>,
    failed: Arc<std::sync::Mutex<Option<String>>>,
}

impl Sink {
    /// Connects as publisher `name`.
    pub async fn connect(endpoint: &Endpoint, name: &str) -> anyhow::Result<Self> {
        Ok(match endpoint {
            Endpoint::Palio { server, tls_dir } => {
                Sink::Palio(palio_connect(server, tls_dir, name).await?)
            }
            Endpoint::Nats { server, ca } => Sink::Nats(
                nats_connect(server, ca.as_deref(), name).await?,
                wire::nats_subject(),
            ),
            Endpoint::Mqtt { server } => {
                let (client, mut events) = mqtt_connect(server, name).await?;
                let written = Arc::new(AtomicU64::new(0));
                let acks = Arc::new(AtomicU64::new(0));
                let progress = Arc::new(Notify::new());
                let failed = Arc::new(std::sync::Mutex::new(None));
                let (w, p, n, f) = (
                    written.clone(),
                    acks.clone(),
                    progress.clone(),
                    failed.clone(),
                );
                tokio::spawn(async move {
                    loop {
                        match events.poll().await {
                            Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                                w.fetch_add(1, Ordering::Relaxed);
                                n.notify_waiters();
                            }
                            Ok(Event::Incoming(Packet::PubAck(_))) => {
                                p.fetch_add(1, Ordering::Relaxed);
                                n.notify_waiters();
                            }
                            Ok(_) => {}
                            Err(e) => {
                                if let Ok(mut slot) = f.lock() {
                                    *slot = Some(e.to_string());
                                }
                                n.notify_waiters();
                                break;
                            }
                        }
                    }
                });
                Sink::Mqtt(MqttPublisher {
                    client,
                    topic: wire::mqtt_topic(),
                    queued: 0,
                    written,
                    progress,
                    acks,
                    failed,
                })
            }
        })
    }

    /// Publishes message `seq` of `size` bytes, stamped now.
    pub async fn send(&mut self, seq: i32, size: usize, buf: &mut Vec<u8>) -> anyhow::Result<()> {
        let now = crate::pubsub::unix_micros();
        match self {
            Sink::Palio(c) => {
                buf.clear();
                buf.resize(size.max(8), 0);
                buf[..8].copy_from_slice(&now.to_le_bytes());
                c.publish(notification(seq, buf.clone())?).await?;
            }
            Sink::Nats(c, subject) => {
                wire::peer_payload(buf, size, now, seq);
                c.publish(subject.clone(), Bytes::copy_from_slice(buf))
                    .await
                    .context("NATS publish")?;
            }
            Sink::Mqtt(m) => {
                wire::peer_payload(buf, size, now, seq);
                m.client
                    .publish_bytes(
                        m.topic.as_str(),
                        QoS::AtMostOnce,
                        false,
                        Bytes::copy_from_slice(buf),
                    )
                    .await
                    .context("MQTT publish")?;
                m.queued += 1;
            }
        }
        Ok(())
    }

    /// Waits until the broker has everything published so far.
    pub async fn settle(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::Palio(c) => {
                c.flush().await?;
            }
            Sink::Nats(c, _) => c.flush().await.context("NATS flush")?,
            Sink::Mqtt(m) => m.settle().await?,
        }
        Ok(())
    }

    /// Disconnects.
    pub async fn close(self) {
        match self {
            Sink::Palio(c) => c.close().await,
            Sink::Nats(c, _) => {
                let _ = c.flush().await;
            }
            Sink::Mqtt(m) => {
                let _ = m.client.disconnect().await;
            }
        }
    }
}

impl MqttPublisher {
    async fn settle(&mut self) -> anyhow::Result<()> {
        // Every publication written to the socket, then a QoS 1 marker acked: the broker has
        // read what came before the marker.
        self.wait(|m| m.written.load(Ordering::Relaxed) >= m.queued)
            .await?;
        let acks = self.acks.load(Ordering::Relaxed);
        self.client
            .publish(SETTLE_TOPIC, QoS::AtLeastOnce, false, Vec::new())
            .await
            .context("MQTT publish (settle marker)")?;
        self.queued += 1;
        self.wait(|m| m.acks.load(Ordering::Relaxed) > acks).await
    }

    async fn wait(&self, done: impl Fn(&Self) -> bool) -> anyhow::Result<()> {
        loop {
            let progressed = self.progress.notified();
            if done(self) {
                return Ok(());
            }
            if let Ok(Some(e)) = self.failed.lock().map(|f| f.clone()) {
                bail!("MQTT connection failed: {e}");
            }
            // A bounded wait: the event loop notifies on every write and every answer.
            let _ = tokio::time::timeout(Duration::from_millis(100), progressed).await;
        }
    }
}

/// A subscribed receiver.
pub enum Source {
    /// Palio's SDK.
    Palio(palio::Client, palio::Subscription),
    /// `async-nats`.
    Nats(async_nats::Client, async_nats::Subscriber),
    /// `rumqttc`: publications forwarded by the event loop's task.
    Mqtt(AsyncClient, mpsc::Receiver<Bytes>),
}

impl Source {
    /// Connects as subscriber `k` (which picks its subscription, see [`wire`]) and subscribes.
    pub async fn subscribe(endpoint: &Endpoint, name: &str, k: usize) -> anyhow::Result<Self> {
        Ok(match endpoint {
            Endpoint::Palio { server, tls_dir } => {
                let c = palio_connect(server, tls_dir, name).await?;
                let s = c.subscribe(&wire::palio_filter(k)).await?;
                Source::Palio(c, s)
            }
            Endpoint::Nats { server, ca } => {
                let c = nats_connect(server, ca.as_deref(), name).await?;
                let s = c
                    .subscribe(wire::nats_subscription(k))
                    .await
                    .context("NATS subscribe")?;
                c.flush().await.context("NATS flush")?;
                Source::Nats(c, s)
            }
            Endpoint::Mqtt { server } => {
                let (client, mut events) = mqtt_connect(server, name).await?;
                client
                    .subscribe(wire::mqtt_subscription(k), QoS::AtMostOnce)
                    .await
                    .context("MQTT subscribe")?;
                // Wait for the SUBACK before saying `subscribed`.
                let acked = tokio::time::timeout(CONNECT, async {
                    loop {
                        match events.poll().await? {
                            Event::Incoming(Packet::SubAck(_)) => return Ok(()),
                            _ => continue,
                        }
                    }
                })
                .await;
                match acked {
                    Ok(Ok(())) => {}
                    Ok(Err::<(), rumqttc::ConnectionError>(e)) => {
                        return Err(e).context("MQTT subscribe");
                    }
                    Err(_) => bail!("MQTT: no SUBACK within {CONNECT:?}"),
                }
                let (tx, rx) = mpsc::channel(4096);
                tokio::spawn(async move {
                    while let Ok(event) = events.poll().await {
                        if let Event::Incoming(Packet::Publish(p)) = event
                            && tx.send(p.payload).await.is_err()
                        {
                            break;
                        }
                    }
                });
                Source::Mqtt(client, rx)
            }
        })
    }

    /// The next message's send time (µs since the epoch) and `seq`; `None` when the
    /// connection has ended. Messages that are not the benchmark's are skipped.
    pub async fn next(&mut self) -> Option<(u64, i32)> {
        loop {
            let decoded = match self {
                Source::Palio(_, s) => decode(&s.next().await?),
                Source::Nats(_, s) => wire::decode_peer(&s.next().await?.payload),
                Source::Mqtt(_, rx) => wire::decode_peer(&rx.recv().await?),
            };
            if decoded.is_some() {
                return decoded;
            }
        }
    }

    /// Disconnects.
    pub async fn close(self) {
        match self {
            Source::Palio(c, _) => c.close().await,
            Source::Nats(c, _) => drop(c),
            Source::Mqtt(c, _) => {
                let _ = c.disconnect().await;
            }
        }
    }
}

async fn palio_connect(
    server: &str,
    tls_dir: &std::path::Path,
    name: &str,
) -> anyhow::Result<palio::Client> {
    let opts = palio::ConnectOptions::new(server)
        .tls_dir(tls_dir)
        .name(name)
        .timeout(CONNECT);
    palio::Client::connect(opts)
        .await
        .with_context(|| format!("connecting to Palio at {server}"))
}

async fn nats_connect(
    server: &str,
    ca: Option<&std::path::Path>,
    name: &str,
) -> anyhow::Result<async_nats::Client> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(CONNECT);
    if let Some(ca) = ca {
        opts = opts
            .add_root_certificates(ca.to_path_buf())
            .require_tls(true);
    }
    opts.connect(server)
        .await
        .with_context(|| format!("connecting to NATS at {server}"))
}

async fn mqtt_connect(server: &str, name: &str) -> anyhow::Result<(AsyncClient, EventLoop)> {
    let (host, port) = server
        .rsplit_once(':')
        .with_context(|| format!("{server:?} is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("the port of {server:?}"))?;
    let id = format!("{name}-{}", std::process::id());
    let mut opts = MqttOptions::new(id, host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    // Room for the largest benchmark message (64 KiB) and its header.
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(opts, 1024);
    // The CONNACK, before anything is published.
    let connected = tokio::time::timeout(CONNECT, async {
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = events.poll().await? {
                return Ok::<(), rumqttc::ConnectionError>(());
            }
        }
    })
    .await;
    match connected {
        Ok(Ok(())) => Ok((client, events)),
        Ok(Err(e)) => Err(e).with_context(|| format!("connecting to MQTT at {server}")),
        Err(_) => bail!("MQTT: no CONNACK from {server} within {CONNECT:?}"),
    }
}
