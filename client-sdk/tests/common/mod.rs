//! A scripted broker for the SDK's tests: a QUIC endpoint in the test that speaks the wire
//! protocol frame by frame. It checks what the client sends and makes the broker's answers
//! (acks, refusals, messages, a lost connection) happen exactly when a test needs them, which
//! a real broker cannot be made to do. Every wait is bounded.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::future::Future;
#[cfg(feature = "cli")]
use std::process::ExitCode;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use palio::filter::{AttrName, Value};
use palio::{Client, ConnectOptions, Notification};
use palio_protocol::tls::{self, DevPki};
use palio_protocol::{
    ClientFrame, DEFAULT_MAX_FRAME, DurableMessage, FrameCodec, PROTOCOL_VERSION, ServerFrame,
    Welcome,
};
use tokio_util::codec::{FramedRead, FramedWrite};

/// The bound on every wait in these tests.
pub const LIMIT: Duration = Duration::from_secs(30);

/// The broker's side of one client connection, after the hello.
pub struct Session {
    pub conn: quinn::Connection,
    pub rx: FramedRead<quinn::RecvStream, FrameCodec<ClientFrame>>,
    pub tx: FramedWrite<quinn::SendStream, FrameCodec<()>>,
}

impl Session {
    pub async fn recv(&mut self) -> ClientFrame {
        tokio::time::timeout(LIMIT, self.rx.next())
            .await
            .expect("a frame from the client in time")
            .expect("the control stream is open")
            .expect("a well-formed frame")
    }

    pub async fn send(&mut self, frame: ServerFrame) {
        self.tx.send(&frame).await.expect("send to the client");
    }

    /// Waits until the client closes the connection.
    pub async fn until_closed(self) {
        let _ = tokio::time::timeout(LIMIT, self.conn.closed()).await;
    }
}

/// A scripted broker serving one connection.
pub struct Mock {
    addr: String,
    dir: tempfile::TempDir,
    script: tokio::task::JoinHandle<()>,
}

impl Mock {
    /// A broker announcing the default frame limit.
    pub async fn start<F, Fut>(script: F) -> Mock
    where
        F: FnOnce(Session) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        Self::start_with(DEFAULT_MAX_FRAME as u32, script).await
    }

    /// A broker announcing `max_frame` in its welcome (it reads and writes frames up to
    /// the default limit whatever it announces, so that tests can exceed what it announced).
    pub async fn start_with<F, Fut>(max_frame: u32, script: F) -> Mock
    where
        F: FnOnce(Session) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::open_or_create(dir.path()).unwrap();
        let config =
            tls::server_config(pki.issue("mock", &[]).unwrap(), pki.roots().unwrap()).unwrap();
        let endpoint = quinn::Endpoint::server(config, ([127, 0, 0, 1], 0).into()).unwrap();
        let addr = endpoint.local_addr().unwrap().to_string();
        let script = tokio::spawn(async move {
            let conn = endpoint.accept().await.unwrap().await.unwrap();
            let (send, recv) = conn.accept_bi().await.unwrap();
            let mut s = Session {
                conn,
                rx: FramedRead::new(recv, FrameCodec::new(DEFAULT_MAX_FRAME)),
                tx: FramedWrite::new(send, FrameCodec::new(DEFAULT_MAX_FRAME)),
            };
            assert!(matches!(s.recv().await, ClientFrame::Hello { .. }));
            s.send(ServerFrame::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                broker: "mock".into(),
                broker_id: 1,
                max_frame,
            }))
            .await;
            script(s).await;
            drop(endpoint);
        });
        Mock { addr, dir, script }
    }

    /// Options to connect to this mock.
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions::new(&self.addr).tls_dir(self.dir.path())
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.options()).await.unwrap()
    }

    /// Runs the `palio` command line (in a thread: it starts its own runtime) with this
    /// broker's address; returns its exit code, stdout and stderr. Needs the `cli` feature.
    #[cfg(feature = "cli")]
    pub async fn cli(&self, args: &[&str]) -> (ExitCode, String, String) {
        let mut full: Vec<String> = vec!["palio".into()];
        full.extend(args.iter().map(|s| s.to_string()));
        full.extend([
            "--server".into(),
            self.addr.clone(),
            "--tls-dir".into(),
            self.dir.path().display().to_string(),
        ]);
        let run = tokio::task::spawn_blocking(move || {
            let cli = <palio::cli::Cli as clap::Parser>::try_parse_from(full).unwrap();
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = palio::cli::run(cli, &mut out, &mut err);
            (
                code,
                String::from_utf8(out).unwrap(),
                String::from_utf8(err).unwrap(),
            )
        });
        tokio::time::timeout(LIMIT, run).await.unwrap().unwrap()
    }

    /// Waits for the script to end, failing the test if one of its assertions failed.
    pub async fn finish(self) {
        tokio::time::timeout(LIMIT, self.script)
            .await
            .expect("the script ends in time")
            .expect("the script's assertions hold");
    }
}

pub fn attr(name: &str, v: i32) -> (AttrName, Value) {
    (AttrName::new(name).unwrap(), Value::Int(v))
}

pub fn message(consumer: u64, tag: u64, delivery_count: u32, seq: i32) -> ServerFrame {
    ServerFrame::Message(DurableMessage {
        consumer,
        tag,
        delivery_count,
        attributes: [attr("seq", seq)].into_iter().collect(),
        payload: b"p".to_vec(),
    })
}

pub fn note(seq: i32) -> Notification {
    Notification::builder().attr("seq", seq).build().unwrap()
}

/// Reads persistent publications and checks their sequence numbers.
pub async fn expect_publications(s: &mut Session, seqs: std::ops::Range<u64>) {
    for expected in seqs {
        match s.recv().await {
            ClientFrame::PublishPersistent { seq, .. } => assert_eq!(seq, expected),
            other => panic!("expected publication {expected}, got {other:?}"),
        }
    }
}

/// An ack through `through` saying how many queues the publications matched:
/// `(from, through, queues)` runs.
pub fn acked(through: u64, runs: &[(u64, u64, u32)]) -> ServerFrame {
    ServerFrame::PublishAcked {
        through,
        matched: runs
            .iter()
            .map(|&(from, through, queues)| palio_protocol::QueueMatches {
                from,
                through,
                queues,
            })
            .collect(),
    }
}

pub async fn expect_producer(s: &mut Session, id: &str, next_seq: u64) {
    let ClientFrame::Producer { request, producer } = s.recv().await else {
        panic!("expected a producer frame");
    };
    assert_eq!(producer, id);
    s.send(ServerFrame::ProducerReady { request, next_seq })
        .await;
}
