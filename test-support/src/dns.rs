//! A loopback DNS server for tests: pebble-challtestsrv, started by `scripts/pebble start`, whose
//! management API sets the records it answers with.
//!
//! The server is shared by every test of a run: each test uses names of its own
//! ([`Challtestsrv::unique_zone`]). A name without an A record of its own is answered with
//! 127.0.0.1; AAAA queries get nothing unless set.

use serde_json::{Value, json};

/// challtestsrv's management API and its DNS address.
pub struct Challtestsrv {
    management: String,
    /// `127.0.0.1:PORT`, for `CLOUDRUNR_DNS_RESOLVER`.
    pub dns: String,
    http: reqwest::Client,
}

impl Challtestsrv {
    /// The server `scripts/pebble start` runs (`CLOUDRUNR_TEST_CHALLTESTSRV`, `CLOUDRUNR_TEST_DNS`).
    /// Without it: `None`, so the test skips — unless CI or `CLOUDRUNR_REQUIRE_SERVICES=1` forbid
    /// skipping, which fails the test.
    pub fn from_env() -> Option<Challtestsrv> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (Some(management), Some(dns)) = (var("CLOUDRUNR_TEST_CHALLTESTSRV"), var("CLOUDRUNR_TEST_DNS")) else {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            let required = std::env::var("CLOUDRUNR_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
            assert!(
                !ci && !required,
                "this test needs pebble-challtestsrv, but CLOUDRUNR_TEST_CHALLTESTSRV/CLOUDRUNR_TEST_DNS are not \
                 set (and CI or CLOUDRUNR_REQUIRE_SERVICES=1 forbids skipping): run `eval \"$(scripts/pebble start)\"`"
            );
            eprintln!("skipping a DNS test: CLOUDRUNR_TEST_CHALLTESTSRV is not set (scripts/pebble start)");
            return None;
        };
        Some(Challtestsrv {
            management: management.trim_end_matches('/').to_owned(),
            dns,
            http: reqwest::Client::new(),
        })
    }

    /// A zone name no other test uses: `<random>.test`.
    pub fn unique_zone() -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("z{:x}{nanos:x}{n}.test", std::process::id())
    }

    async fn post(&self, path: &str, body: Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.management))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("challtestsrv {path}: {e}"));
        assert!(
            resp.status().is_success(),
            "challtestsrv {path} {body}: {}",
            resp.status()
        );
    }

    pub async fn set_txt(&self, host: &str, value: &str) {
        self.post("/set-txt", json!({ "host": host, "value": value })).await;
    }

    pub async fn clear_txt(&self, host: &str) {
        self.post("/clear-txt", json!({ "host": host })).await;
    }

    pub async fn add_a(&self, host: &str, addresses: &[&str]) {
        self.post("/add-a", json!({ "host": host, "addresses": addresses }))
            .await;
    }

    pub async fn set_cname(&self, host: &str, target: &str) {
        self.post("/set-cname", json!({ "host": host, "target": target })).await;
    }

    pub async fn clear_cname(&self, host: &str) {
        self.post("/clear-cname", json!({ "host": host })).await;
    }
}
