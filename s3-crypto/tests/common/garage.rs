//! The S3-compatible store the `s3ec` and `framed` test binaries run against: Garage, started by
//! `scripts/garage.sh` and found through `ENVELOPE_TEST_S3_*`. Without it the tests are skipped;
//! under `CI` its absence is a failure. Both binaries include this file
//! (`#[path = "../common/garage.rs"] mod garage_store;`), so not every item is used by each.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};

/// Where the store is and how to sign for it.
pub struct Garage {
    pub endpoint: String,
    pub region: String,
    pub akid: String,
    pub secret: String,
    pub bucket: String,
}

/// The store of `scripts/garage.sh`; `None` (skip) without it, a failure under CI.
pub fn garage() -> Option<Garage> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match var("ENVELOPE_TEST_S3_ENDPOINT") {
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but ENVELOPE_TEST_S3_ENDPOINT is not (scripts/test starts Garage)"
            );
            eprintln!("skipped: no S3 server (run scripts/garage.sh start DIR and source DIR/env)");
            None
        }
        Some(endpoint) => Some(Garage {
            endpoint,
            region: var("ENVELOPE_TEST_S3_REGION").unwrap_or_else(|| "garage".into()),
            akid: var("ENVELOPE_TEST_S3_ACCESS_KEY_ID").expect("ENVELOPE_TEST_S3_ACCESS_KEY_ID"),
            secret: var("ENVELOPE_TEST_S3_SECRET_ACCESS_KEY")
                .expect("ENVELOPE_TEST_S3_SECRET_ACCESS_KEY"),
            bucket: var("ENVELOPE_TEST_S3_BUCKET").expect("ENVELOPE_TEST_S3_BUCKET"),
        }),
    }
}

impl Garage {
    /// Asserts that nothing under `key` is left in the bucket: no multipart upload in progress (an
    /// abandoned upload must have been aborted) and no object.
    pub async fn assert_nothing_left(&self, client: &aws_sdk_s3::Client, key: &str) {
        let uploads = client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(key)
            .send()
            .await
            .unwrap();
        assert!(
            uploads.uploads().is_empty(),
            "left behind: {:?}",
            uploads.uploads()
        );
        assert!(s3_crypto::s3::get_object(client, &self.bucket, key)
            .await
            .unwrap()
            .is_none());
    }

    /// The client configuration: path-style addressing, static credentials, and a bound on each
    /// attempt (the SDK sets none, so a request the store never answered would hang the test
    /// binary, and CI with it, rather than fail).
    pub fn config(&self) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(120))
                    .build(),
            )
            .region(Region::new(self.region.clone()))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                &self.akid,
                &self.secret,
                None,
                None,
                "test",
            ))
    }

    pub fn client(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(self.config().build())
    }

    /// A client that records every request it sends ([`Recorder`]).
    pub fn recording_client(&self) -> (aws_sdk_s3::Client, Recorder) {
        let recorder = Recorder::default();
        let client =
            aws_sdk_s3::Client::from_conf(self.config().interceptor(recorder.clone()).build());
        (client, recorder)
    }
}

/// A key under `dir/` that no other test run uses.
pub fn unique_in(dir: &str, name: &str) -> String {
    let mut r = [0u8; 6];
    aws_lc_rs::rand::fill(&mut r).unwrap();
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("{dir}/{name}-{hex}")
}

/// One request: method and URI, and its headers (lower-case names).
pub type Sent = (String, Vec<(String, String)>);

/// Records the method, URI and headers of every request sent.
#[derive(Debug, Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<Sent>>>);

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let r = context.request();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect();
        self.0
            .lock()
            .unwrap()
            .push((format!("{} {}", r.method(), r.uri()), headers));
        Ok(())
    }
}

impl Recorder {
    /// The values of header `name`, from the requests that had it.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, h)| h.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .collect()
    }

    /// The `Range` header of each GET sent so far (`None`: a whole-object GET).
    pub fn get_ranges(&self) -> Vec<Option<String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(line, _)| line.starts_with("GET "))
            .map(|(_, h)| h.iter().find(|(k, _)| k == "range").map(|(_, v)| v.clone()))
            .collect()
    }

    /// Forgets the requests recorded so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    /// Requests sent so far.
    pub fn requests(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The requests sent since the first `from`.
    pub fn since(&self, from: usize) -> Vec<Sent> {
        self.0.lock().unwrap()[from..].to_vec()
    }
}
