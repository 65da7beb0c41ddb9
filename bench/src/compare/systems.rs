//! The servers of one comparison run, each a child process on loopback with ephemeral ports:
//! Palio brokers (`palio-broker`, in a line), NATS servers (`nats-server`: one, a 3-server
//! cluster, with or without TLS), or Mosquitto. Every server is killed when the run ends, fails
//! or is dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::clients::Endpoint;
use crate::pubsub::processes::{Broker, log_tail, with_diagnostics};

/// How long a server may take to start listening.
const START: Duration = Duration::from_secs(30);

/// Which peer, and how it is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// NATS core.
    Nats,
    /// NATS core with TLS on the client connections.
    NatsTls,
    /// Mosquitto (MQTT, QoS 0).
    Mosquitto,
}

/// Where the peers' executables are.
#[derive(Debug, Clone)]
pub struct PeerBins {
    /// `nats-server`.
    pub nats_server: PathBuf,
    /// `mosquitto`.
    pub mosquitto: PathBuf,
}

/// The running servers of one run.
pub(crate) enum Servers {
    /// Palio brokers in a line, and their PKI directory.
    Palio(Vec<Broker>, PathBuf),
    /// NATS servers (a cluster when more than one), and the CA file when on TLS.
    Nats(Vec<PeerProcess>, Option<PathBuf>),
    /// One Mosquitto.
    Mosquitto(Box<PeerProcess>),
}

impl Servers {
    /// Starts `n` Palio brokers in a line under `root`.
    pub(crate) async fn palio(bin: &Path, root: &Path, n: usize) -> anyhow::Result<Self> {
        let tls = root.join("tls");
        let mut brokers: Vec<Broker> = Vec::new();
        for i in 0..n {
            let peer = brokers.last().map(|b| b.quic.clone());
            let b = Broker::start(bin, i, root, &tls, peer.as_deref())
                .await
                .map_err(|e| with_diagnostics(e, &brokers))?;
            brokers.push(b);
        }
        Ok(Servers::Palio(brokers, tls))
    }

    /// Starts the peer: `n` servers (a cluster) under `root`.
    pub(crate) async fn peer(
        kind: PeerKind,
        bins: &PeerBins,
        root: &Path,
        n: usize,
    ) -> anyhow::Result<Self> {
        match kind {
            PeerKind::Nats | PeerKind::NatsTls => {
                let tls = if kind == PeerKind::NatsTls {
                    Some(nats_certificates(root)?)
                } else {
                    None
                };
                let mut servers: Vec<PeerProcess> = Vec::new();
                for i in 0..n {
                    let seed = servers.first().and_then(|s| s.route.clone());
                    let conf = nats_config(root, i, n, seed.as_deref(), tls.as_ref())?;
                    servers.push(PeerProcess::nats(&bins.nats_server, root, i, &conf).await?);
                }
                Ok(Servers::Nats(servers, tls.map(|t| t.ca)))
            }
            PeerKind::Mosquitto => {
                if n != 1 {
                    bail!("Mosquitto runs as one broker here (its bridges are not a cluster)");
                }
                let m = PeerProcess::mosquitto(&bins.mosquitto, root).await?;
                Ok(Servers::Mosquitto(Box::new(m)))
            }
        }
    }

    /// Where publishers connect: the first server.
    pub(crate) fn publish_endpoint(&self) -> anyhow::Result<Endpoint> {
        self.endpoint(false)
    }

    /// Where subscribers connect: the last server.
    pub(crate) fn subscribe_endpoint(&self) -> anyhow::Result<Endpoint> {
        self.endpoint(true)
    }

    fn endpoint(&self, last: bool) -> anyhow::Result<Endpoint> {
        let pick = |len: usize| if last { len.saturating_sub(1) } else { 0 };
        Ok(match self {
            Servers::Palio(b, tls) => Endpoint::Palio {
                server: b.get(pick(b.len())).context("no broker")?.quic.clone(),
                tls_dir: tls.clone(),
            },
            Servers::Nats(s, ca) => Endpoint::Nats {
                server: s.get(pick(s.len())).context("no server")?.addr.clone(),
                ca: ca.clone(),
            },
            Servers::Mosquitto(m) => Endpoint::Mqtt {
                server: m.addr.clone(),
            },
        })
    }

    /// CPU seconds the servers have used so far, summed.
    pub(crate) fn cpu_secs(&self) -> Option<f64> {
        match self {
            Servers::Palio(b, _) => b.iter().map(Broker::cpu_secs).sum(),
            Servers::Nats(s, _) => s.iter().map(PeerProcess::cpu_secs).sum(),
            Servers::Mosquitto(m) => m.cpu_secs(),
        }
    }

    /// Adds what the servers show (Palio's counters, the logs' tails) to an error.
    pub(crate) fn diagnose(&self, e: anyhow::Error) -> anyhow::Error {
        match self {
            Servers::Palio(b, _) => with_diagnostics(e, b),
            Servers::Nats(s, _) => {
                let logs: Vec<String> = s.iter().map(|p| log_tail(&p.log, 5)).collect();
                e.context(format!("nats-server logs:\n{}", logs.join("\n")))
            }
            Servers::Mosquitto(m) => e.context(format!("mosquitto log:\n{}", log_tail(&m.log, 5))),
        }
    }

    /// Stops every server.
    pub(crate) async fn stop(self) {
        match self {
            Servers::Palio(b, _) => {
                for b in b {
                    b.stop().await;
                }
            }
            Servers::Nats(s, _) => {
                for s in s {
                    s.stop().await;
                }
            }
            Servers::Mosquitto(m) => m.stop().await,
        }
    }
}

/// A peer's server process, killed when dropped.
pub(crate) struct PeerProcess {
    child: Child,
    addr: String,
    route: Option<String>,
    log: PathBuf,
}

impl PeerProcess {
    async fn nats(bin: &Path, root: &Path, index: usize, conf: &Path) -> anyhow::Result<Self> {
        let log = root.join(format!("nats{index}.log"));
        let child = spawn(bin, &["-c".as_ref(), conf.as_os_str()], &log)?;
        let mut p = PeerProcess {
            child,
            addr: String::new(),
            route: None,
            log,
        };
        let end = Instant::now() + START;
        loop {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let find = |what: &str| {
                text.lines()
                    .find_map(|l| l.split(what).nth(1))
                    .map(|a| a.trim().to_owned())
            };
            if let Some(addr) = find("Listening for client connections on ") {
                p.addr = addr;
                p.route = find("Listening for route connections on ");
                return Ok(p);
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                bail!("nats-server exited ({status}):\n{}", log_tail(&p.log, 20));
            }
            if Instant::now() > end {
                bail!(
                    "nats-server did not listen within {START:?}:\n{}",
                    log_tail(&p.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn mosquitto(bin: &Path, root: &Path) -> anyhow::Result<Self> {
        // Mosquitto takes no port 0: take a free port from the kernel and hand it over (a
        // short race with other programs, which a failed start reports).
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf = root.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
            ),
        )?;
        let log = root.join("mosquitto.log");
        let child = spawn(bin, &["-c".as_ref(), conf.as_os_str()], &log)?;
        let mut p = PeerProcess {
            child,
            addr: format!("127.0.0.1:{port}"),
            route: None,
            log,
        };
        let end = Instant::now() + START;
        while tokio::net::TcpStream::connect(&p.addr).await.is_err() {
            if let Ok(Some(status)) = p.child.try_wait() {
                bail!("mosquitto exited ({status}):\n{}", log_tail(&p.log, 20));
            }
            if Instant::now() > end {
                bail!(
                    "mosquitto did not listen within {START:?}:\n{}",
                    log_tail(&p.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(p)
    }

    fn cpu_secs(&self) -> Option<f64> {
        crate::clock::pid_cpu_secs(self.child.id()?)
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

fn spawn(bin: &Path, args: &[&std::ffi::OsStr], log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::File::create(log).context("a server log file")?;
    let err = out.try_clone()?;
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (install the peers with bench/setup-peers.sh)",
                bin.display()
            )
        })
}

/// The certificate files of a NATS server on TLS.
struct NatsTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA and a server certificate for `127.0.0.1` and `localhost`, written under `root` (made
/// once per comparison and reused).
fn nats_certificates(root: &Path) -> anyhow::Result<NatsTls> {
    let files = NatsTls {
        ca: root.join("nats-ca.pem"),
        cert: root.join("nats-server.pem"),
        key: root.join("nats-server-key.pem"),
    };
    if files.ca.is_file() && files.cert.is_file() && files.key.is_file() {
        return Ok(files);
    }
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "palio-bench NATS CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::write(&files.ca, ca.pem())?;
    std::fs::write(&files.cert, cert.pem())?;
    std::fs::write(&files.key, key.serialize_pem())?;
    Ok(files)
}

/// The configuration file of NATS server `index` of `n`: loopback, random ports, a cluster
/// seeded by the first server's route address when `n > 1`, TLS when given.
fn nats_config(
    root: &Path,
    index: usize,
    n: usize,
    seed: Option<&str>,
    tls: Option<&NatsTls>,
) -> anyhow::Result<PathBuf> {
    let mut text = format!("server_name: bench{index}\nhost: 127.0.0.1\nport: -1\n");
    if let Some(t) = tls {
        text.push_str(&format!(
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\n",
            t.cert.display().to_string(),
            t.key.display().to_string()
        ));
    }
    if n > 1 {
        text.push_str("cluster {\n  name: bench\n  listen: 127.0.0.1:-1\n");
        if let Some(seed) = seed {
            text.push_str(&format!("  routes: [\"nats-route://{seed}\"]\n"));
        }
        text.push_str("}\n");
    }
    let path = root.join(format!("nats{index}.conf"));
    std::fs::write(&path, text)?;
    Ok(path)
}
