//! Subscribes and prints every matching notification.
//!
//! ```sh
//! palio-broker &                     # defaults: 127.0.0.1:7400, ./palio-data
//! cargo run -p palio --example subscriber -- "type = 'alarm' AND level > 2"
//! ```

use futures_util::StreamExt;
use palio::{Client, ConnectOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "type = 'alarm'".into());
    let opts = ConnectOptions::new("127.0.0.1:7400").tls_dir("./palio-data/tls");
    let client = Client::connect(opts).await?;
    let mut sub = client.subscribe(&filter).await?;
    eprintln!("subscribed to {filter:?} at {}", client.broker().broker);
    // `Subscription` is a `Stream`; `sub.next().await` works without importing the trait too.
    while let Some(n) = StreamExt::next(&mut sub).await {
        println!("{}", n.to_cloudevent());
    }
    Ok(())
}
