//! Test hooks, debug builds only (a release build's `wrap` returns the client as it is): damage
//! or lose S3 traffic so the interop tests can drive `s3 cp`'s failure paths through the real
//! binary against a real store.

/// `ENVELOPE_TEST_CORRUPT_PUTS`: `ENVELOPE_TEST_CORRUPT_PUTS=N` flips a byte of the first N
/// PutObject/UploadPart bodies after their Content-MD5 was computed (damage on the way), so the
/// interop tests can see the store's BadDigest surface through the real binary; `K:N` lets the
/// first K bodies through, then damages N. `ENVELOPE_TEST_LOSE_ANSWERS` and
/// `ENVELOPE_TEST_WRONG_ETAGS` are described at their interceptors. Each hook says on stderr
/// every time it acts, so that a test can count the requests sent.
#[cfg(debug_assertions)]
mod hooks {
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};

    use aws_sdk_s3::config::interceptors::{
        BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
        BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextMut,
    };
    use aws_sdk_s3::config::{ConfigBag, Intercept, RequestChecksumCalculation, RuntimeComponents};
    use aws_sdk_s3::operation::put_object::PutObjectOutput;
    use aws_sdk_s3::operation::upload_part::UploadPartOutput;
    use aws_sdk_s3::primitives::SdkBody;

    pub fn wrap(client: aws_sdk_s3::Client) -> aws_sdk_s3::Client {
        let corrupt = std::env::var("ENVELOPE_TEST_CORRUPT_PUTS")
            .ok()
            .and_then(|v| skip_then(&v));
        let count = |name| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
        let lose = count("ENVELOPE_TEST_LOSE_ANSWERS");
        let wrong_etags = std::env::var("ENVELOPE_TEST_WRONG_ETAGS")
            .ok()
            .and_then(|v| skip_then(&v));
        if corrupt.is_none() && lose.is_none() && wrong_etags.is_none() {
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
                armed: AtomicU8::new(NOTHING),
                heads_fail: std::env::var_os("ENVELOPE_TEST_FAIL_HEADS_AFTER").is_some(),
                lost: AtomicBool::new(false),
            });
        }
        if let Some((skip, n)) = wrong_etags {
            config = config.interceptor(WrongEtags {
                skip: AtomicU32::new(skip),
                remaining: AtomicU32::new(n),
            });
        }
        aws_sdk_s3::Client::from_conf(config.build())
    }

    /// `N` (act on the first N) or `K:N` (let K through, then act on N).
    fn skip_then(v: &str) -> Option<(u32, u32)> {
        match v.split_once(':') {
            Some((k, n)) => Some((k.parse().ok()?, n.parse().ok()?)),
            None => Some((0, v.parse().ok()?)),
        }
    }

    /// Counts one more request a hook sees: whether it acts on it (past the first `skip`, within
    /// the next `remaining`).
    fn acts(skip: &AtomicU32, remaining: &AtomicU32) -> bool {
        skip.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
            && remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
    }

    /// `ENVELOPE_TEST_WRONG_ETAGS=N` (or `K:N`, after K): the first N PutObject/UploadPart
    /// answers carry the ETag of other bytes (an MD5, not the one of the body sent), as from a
    /// store that stored something else than it was sent.
    #[derive(Debug)]
    struct WrongEtags {
        skip: AtomicU32,
        remaining: AtomicU32,
    }

    impl Intercept for WrongEtags {
        fn name(&self) -> &'static str {
            "WrongEtagsForTests"
        }

        fn modify_before_attempt_completion(
            &self,
            context: &mut FinalizerInterceptorContextMut<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let Some(Ok(output)) = context.output_or_error_mut() else {
                return Ok(());
            };
            let etag = if let Some(out) = output.downcast_mut::<PutObjectOutput>() {
                &mut out.e_tag
            } else if let Some(out) = output.downcast_mut::<UploadPartOutput>() {
                &mut out.e_tag
            } else {
                return Ok(());
            };
            if acts(&self.skip, &self.remaining) {
                // The MD5 of "abc", which no test uploads.
                *etag = Some("\"900150983cd24fb0d6963f7d28e17f72\"".to_owned());
                eprintln!("test hook: ETag of other bytes answered");
            }
            Ok(())
        }
    }

    /// `ENVELOPE_TEST_LOSE_ANSWERS=N`: the store's answers to the first N requests that make an
    /// object appear (a PutObject of the object, not of its instruction file or a part; a
    /// CompleteMultipartUpload) are replaced by a 500 InternalError after the store has acted, as
    /// when an answer is lost on the way back. With `ENVELOPE_TEST_FAIL_HEADS_AFTER` set too, every
    /// HeadObject after the first lost answer is answered 503, as from a store gone away (whatever its value).
    #[derive(Debug)]
    struct LoseAnswers {
        remaining: AtomicU32,
        /// What the request in flight is: [`NOTHING`], [`COMMIT`] or [`HEAD`]. A commit (its parts
        /// and its instruction file done by then) and the HEAD that judges it are sent alone, so
        /// one mark is enough.
        armed: AtomicU8,
        heads_fail: bool,
        lost: AtomicBool,
    }

    const NOTHING: u8 = 0;
    const COMMIT: u8 = 1;
    const HEAD: u8 = 2;

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
            let mark = match r.method() {
                "PUT" if !path.ends_with(".instruction") && !query.contains("partNumber=") => {
                    COMMIT
                }
                "POST" if query.contains("uploadId=") => COMMIT,
                "HEAD" if self.heads_fail && !path.ends_with(".instruction") => HEAD,
                _ => NOTHING,
            };
            self.armed.store(mark, Ordering::SeqCst);
            Ok(())
        }

        fn modify_before_deserialization(
            &self,
            context: &mut BeforeDeserializationInterceptorContextMut<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let (status, body, said) = match self.armed.swap(NOTHING, Ordering::SeqCst) {
                COMMIT
                    if self
                        .remaining
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok() =>
                {
                    self.lost.store(true, Ordering::SeqCst);
                    (500u16, "<Error><Code>InternalError</Code><Message>The answer was lost (test hook).</Message></Error>", "answer lost")
                }
                HEAD if self.lost.load(Ordering::SeqCst) => (503, "", "HEAD failed"),
                _ => return Ok(()),
            };
            eprintln!("test hook: {said}");
            let response = context.response_mut();
            *response.status_mut() = status.try_into()?;
            *response.body_mut() = SdkBody::from(body);
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
            if !acts(&self.skip, &self.remaining) {
                return Ok(());
            }
            let mut bytes = context
                .request()
                .body()
                .bytes()
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            eprintln!("test hook: body damaged");
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
