//! A consumer's service that keeps its own key for a provider's API fresh: the key lives in an
//! environment file; when the provider's policy rotates it (or is about to), the holder fetches
//! or makes the new version, uses it at once and writes it back to the file.
//!
//! ```sh
//! echo "ACME_KEY=shop_live_…" > acme.env
//! KEYROLL_URL=http://127.0.0.1:8080 cargo run -p keyroll-client --example self_rotating
//! ```

use std::time::Duration;

use keyroll_client::{EnvFileSink, HolderOptions, KeyHolder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("KEYROLL_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let options = HolderOptions { check_every: Duration::from_secs(600), ..HolderOptions::default() };
    let holder = KeyHolder::from_sink(&url, EnvFileSink::new("acme.env", "ACME_KEY"), options)?;
    holder.spawn(|outcome| println!("key check: {outcome:?}"));
    let http = reqwest::Client::new();
    loop {
        // Every call uses the key held now, and tells the holder what the provider said.
        let res = http.get(format!("{url}/v1/self")).bearer_auth(&*holder.current()).send().await?;
        holder.observe(res.headers());
        println!("provider answered {}", res.status());
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}
