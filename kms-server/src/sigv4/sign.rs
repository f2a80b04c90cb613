//! Signing KMS JSON 1.1 requests, the client's side of SigV4: for the tests and the load driver
//! (feature `test-util`); the server only verifies.

use aws_lc_rs::hmac;
use time::OffsetDateTime;

use super::{
    canonical_request, format_amz_date, push_hex, sha256_hex, signing_key, string_to_sign,
    ALGORITHM,
};

/// Signs KMS JSON 1.1 requests (`POST /`, headers content-type, host, x-amz-date, x-amz-target) for
/// one access key, keeping the day's signing key (as the AWS SDKs do) so a request costs two hashes
/// and one HMAC.
pub struct KmsSigner {
    access_key_id: String,
    secret: zeroize::Zeroizing<Vec<u8>>,
    region: String,
    day_key: std::sync::Mutex<Option<(String, hmac::Key)>>,
}

impl std::fmt::Debug for KmsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsSigner")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl KmsSigner {
    /// A signer for one access key and region.
    pub fn new(access_key_id: &str, secret: &str, region: &str) -> Self {
        Self {
            access_key_id: access_key_id.to_string(),
            secret: zeroize::Zeroizing::new(secret.as_bytes().to_vec()),
            region: region.to_string(),
            day_key: std::sync::Mutex::new(None),
        }
    }

    /// The `x-amz-date` and `authorization` header values for a request sent at `now`.
    pub fn sign(
        &self,
        host: &str,
        target: &str,
        body: &[u8],
        now: OffsetDateTime,
    ) -> [(&'static str, String); 2] {
        let amz_date = format_amz_date(now);
        let date = &amz_date[..8.min(amz_date.len())];
        let signed = "content-type;host;x-amz-date;x-amz-target";
        let headers: [(&str, &[u8]); 4] = [
            ("content-type", b"application/x-amz-json-1.1"),
            ("host", host.as_bytes()),
            ("x-amz-date", amz_date.as_bytes()),
            ("x-amz-target", target.as_bytes()),
        ];
        let creq = canonical_request(
            "POST",
            "/",
            "",
            headers.iter().copied(),
            signed,
            &sha256_hex(body),
        );
        let scope = format!("{date}/{}/kms/aws4_request", self.region);
        let sts = string_to_sign(&amz_date, &scope, &creq);
        let tag = {
            let mut cached = self
                .day_key
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cached.as_ref().is_none_or(|(d, _)| d != date) {
                *cached = Some((
                    date.to_string(),
                    signing_key(&self.secret, date, &self.region, "kms"),
                ));
            }
            match cached.as_ref() {
                Some((_, key)) => hmac::sign(key, sts.as_bytes()),
                None => hmac::sign(
                    &signing_key(&self.secret, date, &self.region, "kms"),
                    sts.as_bytes(),
                ),
            }
        };
        let mut auth = String::with_capacity(256);
        auth.push_str(ALGORITHM);
        auth.push_str(" Credential=");
        auth.push_str(&self.access_key_id);
        auth.push('/');
        auth.push_str(&scope);
        auth.push_str(", SignedHeaders=");
        auth.push_str(signed);
        auth.push_str(", Signature=");
        push_hex(&mut auth, tag.as_ref());
        [("x-amz-date", amz_date), ("authorization", auth)]
    }
}

/// Signs one KMS JSON 1.1 request; see [`KmsSigner`] for many.
pub fn sign_kms_request(
    host: &str,
    target: &str,
    body: &[u8],
    access_key_id: &str,
    secret: &str,
    region: &str,
    now: OffsetDateTime,
) -> [(&'static str, String); 2] {
    KmsSigner::new(access_key_id, secret, region).sign(host, target, body, now)
}
