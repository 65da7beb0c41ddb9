//! Publishes a few notifications, then waits until the broker has routed them.
//!
//! ```sh
//! palio-broker &
//! cargo run -p palio --example publisher
//! ```

use palio::{Client, ConnectOptions, Notification};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opts = ConnectOptions::new("127.0.0.1:7400").tls_dir("./palio-data/tls");
    let client = Client::connect(opts).await?;
    // Optional: declare what this client publishes (used by the advertisements strategy).
    let adv = client.advertise("type = 'alarm'").await?;
    for level in 1..=5 {
        let n = Notification::builder()
            .attr("type", "alarm")
            .attr("level", level)
            .attr("source", "/examples/publisher")
            .payload(format!("alarm of level {level}"))
            .build()?;
        client.publish(n).await?;
    }
    // CloudEvents in, notification out.
    let ce = serde_json::json!({
        "specversion": "1.0", "id": "42", "source": "/examples", "type": "alarm", "level": 9,
        "data": "from a CloudEvent"
    });
    client.publish(Notification::from_cloudevent(&ce)?).await?;
    let published = client.flush().await?;
    client.unadvertise(adv).await?;
    println!("{{\"published\": {published}}}");
    client.close().await;
    Ok(())
}
