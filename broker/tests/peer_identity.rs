//! Identities bound to certificates, with in-process brokers sharing one CA: a broker holding a
//! valid broker certificate issued for one name that claims another in its hello is refused,
//! whether it dials or is dialed, and the refusal is counted; a broker whose certificate files
//! name it links as usual; a client given a TLS directory without the CA's key connects with
//! the directory's client identity.

#![allow(clippy::unwrap_used)]

mod harness;

use harness::{InProc, Net, converged, wait_for};
use palio::{Client, ErrorCode, Notification};
use palio_protocol::tls::{DEV_CLIENT_CERT, DEV_CLIENT_KEY, DevPki};

const UNAUTHENTICATED: &str = "palio_connection_errors_total{code=\"unauthenticated\"}";

/// Starts broker `claimed` presenting certificate files that the network's CA issued for
/// broker `certified` (the forged case when they differ), dialing `peers`.
async fn with_certificate_of(
    net: &Net,
    claimed: &str,
    certified: &str,
    peers: &[&InProc],
) -> InProc {
    let pki = DevPki::open_or_create(&net.tls_dir()).unwrap();
    let dir = net.path(&format!("{claimed}-certs"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = pki.issue_files(certified, &[], &dir).unwrap();
    let config = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nca = {:?}\n",
        cert.display().to_string(),
        key.display().to_string(),
        net.tls_dir().join("ca.pem").display().to_string(),
    );
    net.broker_with_files(claimed, &config, peers).await
}

/// The `last_error` of the dial state for `addr` in `/routes` JSON `routes`, if any.
fn last_error(routes: &serde_json::Value, addr: &str) -> Option<String> {
    routes["dialed"]
        .as_array()?
        .iter()
        .find(|s| s["address"] == addr)?["last_error"]
        .as_str()
        .map(str::to_owned)
}

/// The `last_error` of `b`'s dial state for `addr`, once it has one.
async fn dial_error(b: &InProc, addr: std::net::SocketAddr) -> String {
    let addr = addr.to_string();
    let addr = addr.as_str();
    wait_for(
        &format!("{} to fail dialing {addr}", b.name),
        20,
        || async move { last_error(&b.routes().await, addr).is_some() },
    )
    .await;
    last_error(&b.routes().await, addr).unwrap()
}

async fn peers(b: &InProc) -> usize {
    b.routes().await["peers"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_dialer_claiming_another_brokers_name_is_refused() {
    let net = Net::new();
    let x = net.broker("x", "", &[]).await;
    // "b" holds a good broker certificate from the network's CA, but issued for "a".
    let b = with_certificate_of(&net, "b", "a", &[&x]).await;
    let error = dial_error(&b, x.quic).await;
    assert!(
        error.contains("names broker \"a\" but the hello claims \"b\""),
        "{error}"
    );
    wait_for("x to count the refusal", 20, || async {
        x.metric(UNAUTHENTICATED).await >= 1.0
    })
    .await;
    assert_eq!(peers(&x).await, 0, "no link at x");
    assert_eq!(x.routes().await["known_brokers"], 1);
    assert_eq!(peers(&b).await, 0, "no link at b");
}

#[tokio::test]
async fn an_acceptor_claiming_another_brokers_name_is_refused() {
    let net = Net::new();
    let b = with_certificate_of(&net, "b", "a", &[]).await;
    let x = net.broker("x", "", &[&b]).await;
    let error = dial_error(&x, b.quic).await;
    assert!(
        error.contains("names broker \"a\" but the hello claims \"b\""),
        "{error}"
    );
    assert!(x.metric(UNAUTHENTICATED).await >= 1.0);
    assert_eq!(peers(&x).await, 0, "no link at x");
    assert_eq!(x.routes().await["known_brokers"], 1);
    // "b" accepted x's hello (x's certificate names x) and registered the link before its own
    // hello was refused; x's refusal closes it.
    wait_for("b to drop the refused link", 20, || async {
        peers(&b).await == 0
    })
    .await;
}

#[tokio::test]
async fn a_broker_whose_certificate_files_name_it_links_both_ways() {
    let net = Net::new();
    let x = net.broker("x", "", &[]).await;
    let c = with_certificate_of(&net, "c", "c", &[&x]).await;
    let y = net.broker("y", "", &[&c]).await;
    converged(&[&x, &c, &y], &[1, 2, 1]).await;
    assert_eq!(c.metric(UNAUTHENTICATED).await, 0.0);
    assert_eq!(x.metric(UNAUTHENTICATED).await, 0.0);
    assert_eq!(y.metric(UNAUTHENTICATED).await, 0.0);
}

#[tokio::test]
async fn a_client_needs_no_ca_key_in_its_tls_directory() {
    let net = Net::new();
    let x = net.broker("x", "", &[]).await;
    // What an operator hands a client: the CA certificate and the client identity only.
    let client_dir = net.path("client-tls");
    std::fs::create_dir_all(&client_dir).unwrap();
    for file in ["ca.pem", DEV_CLIENT_CERT, DEV_CLIENT_KEY] {
        std::fs::copy(net.tls_dir().join(file), client_dir.join(file)).unwrap();
    }
    assert!(!client_dir.join("ca-key.pem").exists());
    let opts = |dir: &std::path::Path| {
        palio::ConnectOptions::new(x.quic.to_string())
            .tls_dir(dir)
            .timeout(std::time::Duration::from_secs(10))
    };
    let client = Client::connect(opts(&client_dir)).await.unwrap();
    let mut sub = client.subscribe("kind = 'ping'").await.unwrap();
    let n = Notification::builder()
        .attr("kind", "ping")
        .build()
        .unwrap();
    client.publish(n).await.unwrap();
    assert!(harness::next_within(&mut sub, 10_000).await.is_some());

    // With the CA certificate alone there is nothing to present: refused, saying what is
    // missing (this broker takes no tokens; with one, `bad_input.rs` shows a token works).
    let ca_only = net.path("ca-only");
    std::fs::create_dir_all(&ca_only).unwrap();
    std::fs::copy(net.tls_dir().join("ca.pem"), ca_only.join("ca.pem")).unwrap();
    let err = Client::connect(opts(&ca_only)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated), "{err}");
    assert!(err.to_string().contains("client certificate"), "{err}");
}
