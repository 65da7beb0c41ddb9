//! The broker server: binds the QUIC endpoint and the admin listener, then runs the router,
//! the peer dialers, the admin listener and one task per connection until a shutdown future
//! completes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palio_protocol::tls::{self, DevPki, Identity};
use palio_protocol::{ErrorCode, PEER_ALPN};
use palio_topology::{Broker, BrokerId, Config};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::admission::Admission;
use crate::auth::gate::{Access, Gate};
use crate::config::Settings;
use crate::context::{Context, broker_id};
pub use crate::error::StartError;
use crate::groups::{GroupHandle, Groups};
use crate::lock::DataDirLock;
use crate::metrics::Metrics;
use crate::peer::Links;
use crate::persist::{PersistHandle, Store};
use crate::router::{Router, RouterHandle};

/// A bound, not yet running broker.
#[derive(Debug)]
pub struct Server {
    settings: Settings,
    name: String,
    endpoint: quinn::Endpoint,
    admin: Option<tokio::net::TcpListener>,
    tls_dir: Option<PathBuf>,
    peer_roots: Arc<rustls::RootCertStore>,
    /// The recovered store, until `run` hands it to the persist task.
    store: Store,
    /// The groups' log, read back, until `run` hands it to the groups task.
    groups: Groups,
    /// Every metric of this broker (the groups task has them from the start).
    metrics: Metrics,
    store_summary: serde_json::Value,
    /// The data directory lock, held until `run` has returned and the store is closed.
    lock: Arc<DataDirLock>,
    /// The credentials and permissions in force, replaced by [`Reloader::reload`].
    gate: Arc<Gate>,
}

/// Replaces a running broker's credentials and permissions: what SIGHUP does to the daemon.
/// Live sessions authenticate again under the new rules: a client whose credentials no longer
/// hold is disconnected, the others take their new permissions (subscriptions are narrowed
/// again).
#[derive(Debug, Clone)]
pub struct Reloader {
    gate: Arc<Gate>,
    metrics: Metrics,
}

impl Reloader {
    /// Puts `settings`' `[auth]` and `[admin_access]` in force. Other settings are not
    /// reloaded (a restart applies them). Counted in
    /// `palio_config_reloads_total{result="ok"}`.
    pub fn reload(&self, settings: &Settings) {
        self.gate.replace(Access {
            auth: settings.auth.clone(),
            admin: settings.admin_access.clone(),
        });
        self.metrics.reloads.with_label_values(&["ok"]).inc();
        tracing::info!(
            users = settings.auth.users.len(),
            allow_anonymous = settings.auth.allow_anonymous,
            "credentials and permissions reloaded"
        );
    }

    /// Reports a reload whose configuration did not load: nothing changed. Counted in
    /// `palio_config_reloads_total{result="error"}`.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        self.metrics.reloads.with_label_values(&["error"]).inc();
        tracing::error!(%error, "configuration not reloaded; the rules in force stay");
    }
}

impl Server {
    /// Creates the data directory and TLS material as needed and binds the listeners
    /// (`settings.listen`, `settings.admin`). Must run inside a tokio runtime.
    pub async fn bind(settings: Settings) -> Result<Self, StartError> {
        // The lock first: a second broker started with the same configuration is told that
        // the directory is in use, not that the port is.
        let lock = lock_data_dir(&settings)?;
        let udp = std::net::UdpSocket::bind(settings.listen).map_err(|source| StartError::Io {
            what: format!("binding QUIC to {}", settings.listen),
            source,
        })?;
        let admin = match settings.admin {
            Some(a) => Some(
                std::net::TcpListener::bind(a).map_err(|source| StartError::Io {
                    what: format!("binding admin HTTP to {a}"),
                    source,
                })?,
            ),
            None => None,
        };
        Self::locked(settings, udp, admin, lock).await
    }

    /// As [`Server::bind`], on sockets the caller bound (tests bind `127.0.0.1:0` and know the
    /// ports before the broker starts); `settings.listen` and `settings.admin` are ignored.
    pub async fn with_sockets(
        settings: Settings,
        udp: std::net::UdpSocket,
        admin: Option<std::net::TcpListener>,
    ) -> Result<Self, StartError> {
        let lock = lock_data_dir(&settings)?;
        Self::locked(settings, udp, admin, lock).await
    }

    /// The rest of [`Server::with_sockets`], once the data directory is ours.
    async fn locked(
        settings: Settings,
        udp: std::net::UdpSocket,
        admin: Option<std::net::TcpListener>,
        lock: DataDirLock,
    ) -> Result<Self, StartError> {
        let lock = Arc::new(lock);
        let local = udp.local_addr().map_err(|source| StartError::Io {
            what: "reading the QUIC address".into(),
            source,
        })?;
        // The name peers know this broker by, and that its certificate must name.
        let name = settings
            .id
            .clone()
            .unwrap_or_else(|| format!("broker@{local}"));
        let extra: Vec<String> = settings.tls.server_name.iter().cloned().collect();
        let (identity, roots) = match &settings.tls.dir {
            Some(dir) => {
                // The CA, this broker's leaf (naming it), and the client identity that clients
                // given the directory use, so that they never need the CA's key.
                let pki = DevPki::open_or_create(dir)?;
                pki.ensure_client_files()?;
                (pki.issue(&name, &extra)?, pki.roots()?)
            }
            None => {
                let (Some(cert), Some(key), Some(ca)) =
                    (&settings.tls.cert, &settings.tls.key, &settings.tls.ca)
                else {
                    return Err(StartError::NoTls);
                };
                let mut roots = rustls::RootCertStore::empty();
                for c in tls::load_certs(ca)? {
                    roots.add(c).map_err(tls::TlsError::from)?;
                }
                (
                    Identity {
                        chain: tls::load_certs(cert)?,
                        key: tls::load_key(key)?,
                    },
                    roots,
                )
            }
        };
        crate::peer::warn_unless_named(&identity, &name);
        let peer_roots = Arc::new(roots.clone());
        let timeouts = settings.timeouts.quic();
        let server_config = tls::server_config_with(identity.clone(), roots.clone(), &timeouts)?;
        let endpoint_config =
            crate::reset_key::endpoint_config(&settings.data_dir).map_err(|source| {
                StartError::Io {
                    what: "reading or creating the QUIC reset key".into(),
                    source,
                }
            })?;
        let mut endpoint = quinn::Endpoint::new(
            endpoint_config,
            Some(server_config),
            udp,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| StartError::Io {
            what: "starting the QUIC endpoint".into(),
            source,
        })?;
        endpoint.set_default_client_config(tls::client_config_with(
            roots,
            Some(identity),
            PEER_ALPN,
            &timeouts,
        )?);
        let admin = match admin {
            Some(l) => {
                let io = |source| StartError::Io {
                    what: "starting the admin listener".into(),
                    source,
                };
                l.set_nonblocking(true).map_err(io)?;
                Some(tokio::net::TcpListener::from_std(l).map_err(io)?)
            }
            None => None,
        };
        let tls_dir = settings.tls.dir.clone();
        let store_dir = settings.data_dir.join("store");
        let store = Store::open(
            &store_dir,
            broker_id(&name),
            &settings.store,
            &settings.limits,
        )
        .map_err(|e| StartError::Store {
            dir: store_dir.display().to_string(),
            message: e,
        })?;
        let store_summary = store.summary();
        let metrics = Metrics::new();
        let groups_dir = settings.data_dir.join("groups");
        let groups = Groups::open(
            &groups_dir,
            broker_id(&name),
            &name,
            settings.limits.max_groups,
            metrics.clone(),
        )
        .map_err(|e| StartError::Store {
            dir: groups_dir.display().to_string(),
            message: e,
        })?;
        let gate = Arc::new(Gate::new(Access {
            auth: settings.auth.clone(),
            admin: settings.admin_access.clone(),
        }));
        Ok(Self {
            settings,
            gate,
            name,
            endpoint,
            admin,
            tls_dir,
            peer_roots,
            store,
            groups,
            metrics,
            store_summary,
            lock,
        })
    }

    /// The bound QUIC address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// The bound admin HTTP address, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// The broker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The broker's routing id.
    pub fn broker_id(&self) -> BrokerId {
        broker_id(&self.name)
    }

    /// A handle that reloads credentials and permissions while the broker runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            gate: self.gate.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// The development TLS directory, if one is used.
    pub fn tls_dir(&self) -> Option<&PathBuf> {
        self.tls_dir.as_ref()
    }

    /// Runs until `shutdown` completes, then closes every connection and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let token = CancellationToken::new();
        let id = broker_id(&self.name);
        let incarnation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let metrics = self.metrics.clone();
        let (tx, rx) = mpsc::channel(1024);
        let (hops_tx, hops_rx) = tokio::sync::watch::channel(Default::default());
        let hops_rx_groups = hops_rx.clone();
        let (persist_tx, persist_rx) = mpsc::channel(4096);
        let mut config = Config::new(id, incarnation).with_strategy(self.settings.strategy);
        config.max_brokers = self.settings.limits.max_brokers;
        let router = Router::new(
            Broker::new(config, std::time::Instant::now()),
            self.name.clone(),
            metrics.clone(),
            self.settings.limits.clone(),
            self.settings.static_subscriptions.clone(),
            hops_tx,
        );
        let router_task = tokio::spawn(router.run(rx, token.clone()));
        // The persist task does blocking file I/O (a pwrite per batch, a wait for an fsync
        // when a segment fills, checkpoints): it gets a thread and a runtime of its own so
        // that none of it stalls the network tasks. The groups task fsyncs its log too.
        let persist = self
            .store
            .run(persist_rx, hops_rx, metrics.clone(), token.clone());
        let persist_task = own_thread("palio-persist", persist, &token, self.lock.clone());
        let (groups_tx, groups_rx) = mpsc::channel(4096);
        let groups = self.groups.run(groups_rx, hops_rx_groups, token.clone());
        let groups_task = own_thread("palio-groups", groups, &token, self.lock.clone());
        let ctx = Arc::new(Context::new(
            self.name.clone(),
            id,
            RouterHandle::new(tx),
            PersistHandle::new(persist_tx),
            GroupHandle::new(groups_tx),
            metrics,
            self.settings.limits.clone(),
            self.gate.clone(),
            Admission::new(
                self.settings.limits.max_connections,
                self.settings.limits.max_connections_per_address,
                self.settings.limits.max_connections_per_principal,
            ),
            token.clone(),
        ));
        let links = Arc::new(Links {
            ctx: ctx.clone(),
            incarnation,
            endpoint: self.endpoint.clone(),
            peer_server_name: self
                .settings
                .tls
                .server_name
                .clone()
                .unwrap_or_else(|| tls::DEV_SERVER_NAME.to_owned()),
            peer_roots: self.peer_roots.clone(),
            live_links: Arc::new(Mutex::new(Default::default())),
        });
        if let Some(listener) = self.admin {
            tokio::spawn(crate::admin::serve(ctx.clone(), listener));
        }
        for addr in &self.settings.peers {
            tokio::spawn(crate::peer::dial_loop(links.clone(), addr.clone()));
        }
        let handshakes = Arc::new(tokio::sync::Semaphore::new(
            self.settings.limits.max_handshakes,
        ));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                incoming = self.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    if let Some(admitted) = crate::accept::screen(&ctx, &handshakes, incoming) {
                        tokio::spawn(crate::accept::accept(ctx.clone(), links.clone(), admitted));
                    }
                }
                () = &mut shutdown => break,
                // A component that cannot run (the persist thread) stops the broker.
                () = token.cancelled() => break,
            }
        }
        tracing::info!(broker = %self.name, "shutting down");
        token.cancel();
        self.endpoint.close(
            ErrorCode::ShuttingDown.code().into(),
            b"broker shutting down",
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), router_task).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), persist_task).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), groups_task).await;
    }

    /// What store recovery found at startup (records replayed, problems reported), as JSON.
    pub fn store_summary(&self) -> &serde_json::Value {
        &self.store_summary
    }
}

/// Creates the data directory if needed and locks it (the `lock` module), before anything
/// else touches it.
fn lock_data_dir(settings: &Settings) -> Result<DataDirLock, StartError> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|source| StartError::Io {
        what: format!("creating data directory {}", settings.data_dir.display()),
        source,
    })?;
    DataDirLock::acquire(&settings.data_dir)
}

/// Runs `task` on a thread of its own with a current-thread runtime (for tasks that do
/// blocking file I/O). The thread may outlive the server's `run` (its wait for the task is
/// bounded): it holds the data directory lock, so the lock goes only once every such thread
/// is done with the disk. The receiver hears when the task has finished; a thread or runtime
/// that cannot start cancels `token` (the broker shuts down).
fn own_thread(
    name: &str,
    task: impl Future<Output = ()> + Send + 'static,
    token: &CancellationToken,
    lock: Arc<DataDirLock>,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let cancel = token.clone();
    let what = name.to_owned();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(task),
                Err(e) => {
                    tracing::error!(error = %e, thread = %what, "starting a runtime failed");
                    cancel.cancel();
                }
            }
            drop(lock);
            let _ = done.send(());
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, thread = name, "starting a thread failed; shutting down");
        token.cancel();
    }
    finished
}
