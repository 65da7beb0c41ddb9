//! In-process test harness: brokers run on the test's own runtime through the library's
//! public interface ([`Settings::load`], [`Server::with_sockets`], [`Server::run`]), on sockets
//! bound to `127.0.0.1:0` here, so their ports are known before they start. Each broker is
//! stopped when dropped. Metrics, `/routes` and `/healthz` are read over the admin HTTP
//! listener, as an operator would. Every wait is bounded.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palio::{Client, ConnectOptions};
use palio_broker::{Overrides, Reloader, Server, Settings};
use palio_topology::BrokerId;
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// Installs a log subscriber when `PALIO_LOG` is set (e.g. `PALIO_LOG=palio_broker=debug`).
pub fn init_logs() {
    if let Ok(filter) = std::env::var("PALIO_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// A set of brokers sharing one development PKI, in one temporary directory.
pub struct Net {
    root: tempfile::TempDir,
}

impl Net {
    pub fn new() -> Self {
        init_logs();
        Net {
            root: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The shared TLS directory (created by the first broker).
    pub fn tls_dir(&self) -> PathBuf {
        self.root.path().join("tls")
    }

    /// A path in the net's temporary directory (for files a test writes).
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Starts broker `name` with the configuration file `config` (TOML), which names its TLS
    /// files (`[tls] cert`, `key`, `ca`) instead of the shared TLS directory, dialing `peers`.
    /// Its clients still use the shared directory.
    pub async fn broker_with_files(&self, name: &str, config: &str, peers: &[&InProc]) -> InProc {
        let addrs: Vec<SocketAddr> = peers.iter().map(|p| p.quic).collect();
        InProc::launch(
            &self.root.path().join(name),
            None,
            &self.tls_dir(),
            name,
            config,
            &addrs,
        )
        .await
    }

    /// Starts broker `name` with `limits` (the body of a `[limits]` TOML table, may be empty),
    /// dialing `peers`.
    pub async fn broker(&self, name: &str, limits: &str, peers: &[&InProc]) -> InProc {
        self.broker_with(name, &format!("[limits]\n{limits}\n"), peers)
            .await
    }

    /// Starts broker `name` with the configuration file `config` (TOML), dialing `peers`.
    pub async fn broker_with(&self, name: &str, config: &str, peers: &[&InProc]) -> InProc {
        let addrs: Vec<SocketAddr> = peers.iter().map(|p| p.quic).collect();
        self.broker_dialing(name, config, &addrs).await
    }

    /// Starts broker `name` with the configuration file `config` (TOML), dialing the peer
    /// addresses `peers` (a [`DelayRelay`] in front of a broker, say).
    pub async fn broker_dialing(&self, name: &str, config: &str, peers: &[SocketAddr]) -> InProc {
        InProc::start(
            &self.root.path().join(name),
            &self.tls_dir(),
            name,
            config,
            peers,
        )
        .await
    }
}

/// A broker running in-process.
pub struct InProc {
    pub name: String,
    pub id: BrokerId,
    pub quic: SocketAddr,
    pub admin: SocketAddr,
    pub tls_dir: PathBuf,
    /// How it was configured, to load the configuration again on [`InProc::reload`].
    overrides: Overrides,
    reloader: Reloader,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl InProc {
    /// Writes the configuration file `config` (TOML), loads and validates it like the binary
    /// does, binds ephemeral UDP and TCP sockets and runs the server on the current runtime.
    pub async fn start(
        data: &Path,
        tls_dir: &Path,
        name: &str,
        config_text: &str,
        peers: &[SocketAddr],
    ) -> InProc {
        Self::launch(data, Some(tls_dir), tls_dir, name, config_text, peers).await
    }

    /// As [`InProc::start`], with `--tls-dir` set to `tls_override` if given (else the
    /// configuration names the TLS files); clients use `tls_dir`.
    async fn launch(
        data: &Path,
        tls_override: Option<&Path>,
        tls_dir: &Path,
        name: &str,
        config_text: &str,
        peers: &[SocketAddr],
    ) -> InProc {
        std::fs::create_dir_all(data).unwrap();
        let config = data.join("palio.toml");
        std::fs::write(&config, config_text).unwrap();
        let overrides = Overrides {
            config: Some(config),
            id: Some(name.to_owned()),
            data_dir: Some(data.to_owned()),
            tls_dir: tls_override.map(Path::to_owned),
            peers: peers.iter().map(ToString::to_string).collect(),
            ..Overrides::default()
        };
        let settings = Settings::load(&overrides).expect("valid settings");
        let reloader_overrides = overrides.clone();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Server::with_sockets(settings, udp, Some(tcp))
            .await
            .expect("broker starts");
        let quic = server.local_addr().expect("QUIC address");
        let admin = server.admin_addr().expect("admin address");
        let id = server.broker_id();
        let reloader = server.reloader();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        InProc {
            name: name.to_owned(),
            id,
            quic,
            admin,
            tls_dir: tls_dir.to_owned(),
            overrides: reloader_overrides,
            reloader,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Replaces the configuration file with `config_text` and reloads it, as SIGHUP does to
    /// the daemon (credentials and permissions only).
    pub fn reload(&self, config_text: &str) {
        let path = self
            .overrides
            .config
            .as_ref()
            .expect("a configuration file");
        std::fs::write(path, config_text).unwrap();
        let settings = Settings::load(&self.overrides).expect("valid settings");
        self.reloader.reload(&settings);
    }

    /// Connection options for this broker.
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions::new(self.quic.to_string())
            .tls_dir(&self.tls_dir)
            .timeout(Duration::from_secs(10))
    }

    /// A connected SDK client.
    pub async fn client(&self) -> Client {
        Client::connect(self.options())
            .await
            .expect("client connects")
    }

    /// The body of an admin GET (status 200 asserted).
    pub async fn get(&self, path: &str) -> String {
        let (status, body) = http_get(self.admin, path).await;
        assert_eq!(status, 200, "GET {path} on {}: {body}", self.name);
        body
    }

    pub async fn routes(&self) -> Json {
        routes_at(self.admin).await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.get("/metrics").await
    }

    /// The sum of the metric lines starting with `prefix` (name and labels), or 0.
    pub async fn metric(&self, prefix: &str) -> f64 {
        metric_in(&self.metrics_text().await, prefix)
    }

    /// Stops the broker and waits (bounded) for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for InProc {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The sum of the lines of Prometheus text `text` starting with `prefix`.
pub fn metric_in(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// `/routes` of the broker whose admin listener is at `admin`.
pub async fn routes_at(admin: SocketAddr) -> Json {
    let (status, body) = http_get(admin, "/routes").await;
    assert_eq!(status, 200, "GET /routes: {body}");
    serde_json::from_str(&body).expect("/routes is JSON")
}

/// Samples, every 20 ms until `stop` is set (at most `secs`), the most frames any peer outbox
/// of the brokers at `admins` held.
pub fn sample_peer_queues(
    admins: Vec<SocketAddr>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    secs: u64,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut max = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
            for &a in &admins {
                let r = routes_at(a).await;
                for p in r["peers"].as_array().into_iter().flatten() {
                    max = max.max(p["queued_frames"].as_u64().unwrap_or(0));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        max
    })
}

/// A minimal async HTTP/1.1 GET: status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get_with(addr, path, None).await
}

/// [`http_get`] with `Authorization: Bearer TOKEN` when `token` is given.
pub async fn http_get_with(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        buf
    };
    let buf = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("admin answers within 10 s");
    let text = String::from_utf8(buf).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("an HTTP status line");
    (status, body.to_owned())
}

/// Polls the async condition every 50 ms until it holds; panics after `secs` seconds.
pub async fn wait_for<F, Fut>(what: &str, secs: u64, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond().await {
            return;
        }
        assert!(
            Instant::now() < end,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every broker knows all of them and has the given number of live peer links.
pub async fn converged(brokers: &[&InProc], links: &[usize]) {
    for (b, &l) in brokers.iter().zip(links) {
        wait_for(&format!("{} to converge", b.name), 20, || async {
            let r = b.routes().await;
            r["known_brokers"] == brokers.len()
                && r["peers"].as_array().is_some_and(|p| p.len() == l)
        })
        .await;
    }
}

/// The next notification within `millis`, or `None`.
pub async fn next_within(
    sub: &mut palio::Subscription,
    millis: u64,
) -> Option<palio::Notification> {
    tokio::time::timeout(Duration::from_millis(millis), sub.next())
        .await
        .ok()
        .flatten()
}

/// A raw QUIC connection to `addr` with ALPN `alpn`, presenting a broker certificate named
/// `name` issued by the development CA in `tls_dir`.
pub async fn raw_connect(
    addr: SocketAddr,
    tls_dir: &Path,
    name: &str,
    alpn: &[u8],
) -> (quinn::Endpoint, quinn::Connection) {
    use palio_protocol::tls;
    let pki = tls::DevPki::open(tls_dir).unwrap();
    let identity = pki.issue(name, &[]).unwrap();
    let cfg = tls::client_config(pki.roots().unwrap(), Some(identity), alpn).unwrap();
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        ep.connect_with(cfg, addr, tls::DEV_SERVER_NAME).unwrap(),
    )
    .await
    .expect("QUIC handshake within 10 s")
    .expect("QUIC handshake");
    (ep, conn)
}

/// Writes one length-prefixed frame.
pub async fn write_frame<T: serde::Serialize>(s: &mut quinn::SendStream, frame: &T) {
    let body = palio_protocol::encode(frame).unwrap();
    let len = u32::try_from(body.len()).unwrap();
    let fut = async {
        s.write_all(&len.to_be_bytes()).await.unwrap();
        s.write_all(&body).await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("frame written within 10 s");
}

/// Reads one length-prefixed frame (bounded wait).
pub async fn read_frame<T: serde::de::DeserializeOwned>(r: &mut quinn::RecvStream) -> T {
    let fut = async {
        let mut len = [0u8; 4];
        r.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        r.read_exact(&mut body).await.unwrap();
        body
    };
    let body = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("frame read within 10 s");
    palio_protocol::decode(&body).unwrap()
}

/// How a connection ended, as the application close code if it was one; `Err` describes any
/// other end (a stateless reset, an idle timeout…). Waits at most `secs`.
pub async fn closed_with(
    conn: &quinn::Connection,
    secs: u64,
) -> Result<Option<palio::ErrorCode>, String> {
    let e = tokio::time::timeout(Duration::from_secs(secs), conn.closed())
        .await
        .unwrap_or_else(|_| panic!("connection closed within {secs} s"));
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            Ok(palio::ErrorCode::from_code(c.error_code.into_inner()))
        }
        other => Err(other.to_string()),
    }
}

/// A slow link: a UDP relay on loopback that forwards every datagram between one dialer and
/// `target` after `delay`, in order, both ways. A broker that dials the relay's address
/// instead of `target`'s gets a peer link with that much latency each way. Stops when dropped.
pub struct DelayRelay {
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DelayRelay {
    pub async fn start(target: SocketAddr, delay: Duration) -> DelayRelay {
        use std::sync::{Arc, Mutex};
        use tokio::net::UdpSocket;
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let dialer: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        // One direction: read from `from`, then after `delay` write with `to` toward `dest()`.
        fn pipe(
            from: Arc<UdpSocket>,
            to: Arc<UdpSocket>,
            delay: Duration,
            learn: Option<Arc<Mutex<Option<SocketAddr>>>>,
            dest: impl Fn() -> Option<SocketAddr> + Send + 'static,
        ) -> Vec<tokio::task::JoinHandle<()>> {
            let (tx, mut rx) =
                tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
            let reader = tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok((n, src)) = from.recv_from(&mut buf).await {
                    if let Some(l) = &learn {
                        *l.lock().unwrap() = Some(src);
                    }
                    let due = tokio::time::Instant::now() + delay;
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            });
            let writer = tokio::spawn(async move {
                while let Some((due, bytes)) = rx.recv().await {
                    tokio::time::sleep_until(due).await;
                    if let Some(d) = dest() {
                        let _ = to.send_to(&bytes, d).await;
                    }
                }
            });
            vec![reader, writer]
        }
        let mut tasks = pipe(
            front.clone(),
            back.clone(),
            delay,
            Some(dialer.clone()),
            move || Some(target),
        );
        let d = dialer.clone();
        tasks.extend(pipe(back, front, delay, None, move || *d.lock().unwrap()));
        DelayRelay { addr, tasks }
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
