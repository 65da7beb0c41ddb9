//! Permissions through the `palio` command line and reloads through SIGHUP, against a real
//! `palio-broker` process.

#![allow(clippy::unwrap_used)]

mod common;

use common::cli::run;
use common::{BrokerProc, Dirs, next_within, wait_until};
use palio::filter::Value;
use palio::{Client, Notification};

const USERS: &str = r#"
[auth]
allow_anonymous = false

[[auth.user]]
name = "alice"
token = "alice-secret"
publish = "type = 'order'"
subscribe = "FALSE"

[[auth.user]]
name = "carol"
token = "carol-secret"
"#;

fn broker(d: &Dirs, config: &str) -> (BrokerProc, std::path::PathBuf) {
    let cfg = d.path("palio.toml");
    std::fs::write(&cfg, config).unwrap();
    let b = BrokerProc::start(
        &d.path("data"),
        &d.path("tls"),
        &["--config", cfg.to_str().unwrap()],
    );
    (b, cfg)
}

#[test]
fn palio_pub_outside_the_permission_exits_1_and_says_why() {
    let d = Dirs::new();
    let (b, _) = broker(&d, USERS);
    let out = run(
        &b,
        &["pub", "--token", "alice-secret", "--attr", "type=refund"],
        30,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("permission_denied") && stderr.contains("type = 'order'"),
        "{stderr}"
    );
    let out = run(
        &b,
        &["pub", "--token", "alice-secret", "--attr", "type=order"],
        30,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        b.metric("palio_permission_denied_total{action=\"publish\"}"),
        1.0
    );
}

fn note(region: &str, n: i32) -> Notification {
    Notification::builder()
        .attr("region", region)
        .attr("n", n)
        .build()
        .unwrap()
}

fn n_of(n: &Notification) -> i32 {
    match n.get("n") {
        Some(Value::Int(v)) => *v,
        other => panic!("n is {other:?}"),
    }
}

fn hangup(b: &BrokerProc) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &b.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sighup_reloads_permissions_and_a_bad_file_changes_nothing() {
    let d = Dirs::new();
    let (b, cfg) = broker(&d, USERS);
    let carol = || Client::connect(b.options().token("carol-secret"));
    let sub_client = carol().await.unwrap();
    let mut sub = sub_client.subscribe("TRUE").await.unwrap();
    let publisher = carol().await.unwrap();

    // A file that does not load is reported and changes nothing. (Files are replaced by a
    // rename, as an operator's tools should: a reload must never read one half-written.)
    let replace = |text: &str| {
        let tmp = cfg.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &cfg).unwrap();
    };
    replace("[auth\n");
    hangup(&b);
    wait_until("the bad reload to be reported", 10, || {
        b.metric("palio_config_reloads_total{result=\"error\"}") == 1.0
    })
    .await;
    replace(&USERS.replace(
        "token = \"carol-secret\"\n",
        "token = \"carol-secret\"\nsubscribe = \"region = 'eu'\"\n",
    ));
    publisher.publish(note("us", 0)).await.unwrap();
    publisher.flush().await.unwrap();
    let first = next_within(&mut sub, 5000)
        .await
        .expect("still unrestricted");
    assert_eq!(n_of(&first), 0);

    hangup(&b);
    wait_until("the reload", 10, || {
        b.metric("palio_config_reloads_total{result=\"ok\"}") == 1.0
    })
    .await;
    let mut round = 0;
    loop {
        round += 1;
        assert!(round < 100, "SIGHUP never narrowed the subscription");
        publisher.publish(note("us", 2 * round)).await.unwrap();
        publisher.publish(note("eu", 2 * round + 1)).await.unwrap();
        publisher.flush().await.unwrap();
        let mut got = Vec::new();
        while let Some(n) = next_within(&mut sub, 150).await {
            got.push(n_of(&n));
        }
        if got == [2 * round + 1] {
            break;
        }
    }
    assert!(b.get_status("/healthz").0 == 200);
}
