//! An `aws_sdk_s3::Client` from the standard AWS configuration, with the overrides a command
//! line offers.

use crate::error::Result;
use crate::KmsClientBuilder;

/// Builds an `aws_sdk_s3::Client` as the AWS CLI would: region, credentials and profile from the
/// standard chain (see [`KmsClientBuilder`], which resolves them the same way); the endpoint from
/// [`endpoint_url`](Self::endpoint_url), else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else
/// the profile's, else AWS S3 for the region; virtual-hosted addressing unless
/// [`path_style`](Self::path_style).
#[derive(Clone, Debug, Default)]
pub struct S3ClientBuilder {
    base: KmsClientBuilder,
    endpoint_url: Option<String>,
    path_style: bool,
}

impl S3ClientBuilder {
    /// Everything from the environment and the shared files.
    pub fn new() -> Self {
        Self::default()
    }

    /// The S3 endpoint; wins over every configured one.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Path-style addressing (`http://host/bucket/key`), as most self-hosted stores want.
    pub fn path_style(mut self, enabled: bool) -> Self {
        self.path_style = enabled;
        self
    }

    /// The profile of the shared config and credentials files.
    pub fn profile(mut self, name: impl Into<String>) -> Self {
        self.base = self.base.profile(name);
        self
    }

    /// The region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.base = self.base.region(region);
        self
    }

    /// How long to wait for the first byte of an answer once a request is sent; `None`: for ever.
    /// [`DEFAULT_READ_TIMEOUT`](crate::DEFAULT_READ_TIMEOUT) unless set. The clock starts when the
    /// request is sent, so it includes the body: a PutObject or UploadPart also gets its body's time
    /// at 32 KiB/s, in whole multiples of this (nothing more for a body sent in under an eighth).
    pub fn read_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.base = self.base.read_timeout(timeout);
        self
    }

    /// Resolves the configuration and builds the client.
    pub async fn build(self) -> Result<aws_sdk_s3::Client> {
        let sdk = self.base.sdk_config().await?;
        // On the service config, not the loader: `AWS_ENDPOINT_URL_S3` would override a
        // loader-level endpoint, and an explicit one must win.
        let mut config = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(self.path_style);
        if let Some(url) = self.endpoint_url {
            config = config.endpoint_url(url);
        }
        Ok(aws_sdk_s3::Client::from_conf(config.build()))
    }
}
