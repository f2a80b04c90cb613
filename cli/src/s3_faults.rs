//! Test hooks, debug builds only (a release build's `wrap` returns the client as it is): damage
//! or lose S3 traffic so the interop tests can drive `s3 cp`'s failure paths through the real
//! binary against a real store.

/// `ENVELOPE_TEST_CORRUPT_PUTS`: `ENVELOPE_TEST_CORRUPT_PUTS=N` flips a byte of the first N
/// PutObject/UploadPart bodies after their Content-MD5 was computed (damage on the way), so the
/// interop tests can see the store's BadDigest surface through the real binary; `K:N` lets the
/// first K bodies through, then damages N.
#[cfg(debug_assertions)]
mod hooks {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use aws_sdk_s3::config::interceptors::{
        BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
        BeforeTransmitInterceptorContextRef,
    };
    use aws_sdk_s3::config::{ConfigBag, Intercept, RequestChecksumCalculation, RuntimeComponents};
    use aws_sdk_s3::primitives::SdkBody;

    pub fn wrap(client: aws_sdk_s3::Client) -> aws_sdk_s3::Client {
        let corrupt = std::env::var("ENVELOPE_TEST_CORRUPT_PUTS")
            .ok()
            .and_then(|v| match v.split_once(':') {
                Some((k, n)) => Some((k.parse::<u32>().ok()?, n.parse::<u32>().ok()?)),
                None => Some((0, v.parse::<u32>().ok()?)),
            });
        let lose = std::env::var("ENVELOPE_TEST_LOSE_ANSWERS")
            .ok()
            .and_then(|v| v.parse::<u32>().ok());
        if corrupt.is_none() && lose.is_none() {
            return client;
        }
        let mut config = client
            .config()
            .to_builder()
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        if let Some((skip, n)) = corrupt {
            config = config.interceptor(Corrupt {
                skip: AtomicU32::new(skip),
                remaining: AtomicU32::new(n),
            });
        }
        if let Some(n) = lose {
            config = config.interceptor(LoseAnswers {
                remaining: AtomicU32::new(n),
                armed: AtomicBool::new(false),
            });
        }
        aws_sdk_s3::Client::from_conf(config.build())
    }

    /// `ENVELOPE_TEST_LOSE_ANSWERS=N`: the store's answers to the first N requests that make an
    /// object appear (a PutObject of the object, not of its instruction file or a part; a
    /// CompleteMultipartUpload) are replaced by a 500 InternalError after the store has acted, as
    /// when an answer is lost on the way back.
    #[derive(Debug)]
    struct LoseAnswers {
        remaining: AtomicU32,
        /// Whether the request in flight makes an object appear. A commit is sent alone (its
        /// parts and its instruction file are done by then), so one flag is enough.
        armed: AtomicBool,
    }

    impl Intercept for LoseAnswers {
        fn name(&self) -> &'static str {
            "LoseAnswersForTests"
        }

        // The request is gone by the time the answer is read: it is marked while still there.
        fn read_before_transmit(
            &self,
            context: &BeforeTransmitInterceptorContextRef<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let r = context.request();
            let uri = r.uri();
            let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
            let commits = match r.method() {
                "PUT" => !path.ends_with(".instruction") && !query.contains("partNumber="),
                "POST" => query.contains("uploadId="),
                _ => false,
            };
            self.armed.store(commits, Ordering::SeqCst);
            Ok(())
        }

        fn modify_before_deserialization(
            &self,
            context: &mut BeforeDeserializationInterceptorContextMut<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let commits = self.armed.swap(false, Ordering::SeqCst);
            if !commits
                || self
                    .remaining
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_err()
            {
                return Ok(());
            }
            let response = context.response_mut();
            *response.status_mut() = 500u16.try_into()?;
            *response.body_mut() = SdkBody::from(
                "<Error><Code>InternalError</Code><Message>The answer was lost (test hook).</Message></Error>",
            );
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Corrupt {
        skip: AtomicU32,
        remaining: AtomicU32,
    }

    impl Intercept for Corrupt {
        fn name(&self) -> &'static str {
            "CorruptForTests"
        }

        fn modify_before_signing(
            &self,
            context: &mut BeforeTransmitInterceptorContextMut<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            if context.request().method() != "PUT"
                || context.request().headers().get("content-md5").is_none()
            {
                return Ok(());
            }
            let passed = self
                .skip
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if passed.is_ok() {
                return Ok(());
            }
            if self
                .remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err()
            {
                return Ok(());
            }
            let mut bytes = context
                .request()
                .body()
                .bytes()
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            match bytes.first_mut() {
                Some(b) => *b ^= 0x01,
                None => bytes.push(0),
            }
            *context.request_mut().body_mut() = SdkBody::from(bytes);
            Ok(())
        }
    }
}

#[cfg(not(debug_assertions))]
mod hooks {
    pub fn wrap(client: aws_sdk_s3::Client) -> aws_sdk_s3::Client {
        client
    }
}

pub use hooks::wrap;
