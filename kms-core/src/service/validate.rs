//! Checks of request members that several operation families share: required members, ranges,
//! page limits and markers, the encryption algorithm, DryRun and the encryption context. Each
//! answers with the error AWS gives.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::SYMMETRIC_DEFAULT;
use crate::context::EncryptionContext;
use crate::error::{KmsError, Result};

pub(super) fn required<T>(v: Option<T>, field: &str) -> Result<T> {
    v.ok_or_else(|| KmsError::missing(field))
}

pub(super) fn check_range(v: i64, lo: i64, hi: i64, field: &str) -> Result<()> {
    if v < lo {
        return Err(KmsError::constraint(
            v,
            field,
            &format!("Member must have value greater than or equal to {lo}"),
        ));
    }
    if v > hi {
        return Err(KmsError::constraint(
            v,
            field,
            &format!("Member must have value less than or equal to {hi}"),
        ));
    }
    Ok(())
}

/// A string member's length in characters, `lo..=hi`, with AWS's wording (the value echoed).
pub(super) fn check_length(v: &str, lo: usize, hi: usize, field: &str) -> Result<()> {
    let n = v.chars().count();
    if n < lo {
        return Err(KmsError::constraint(
            v,
            field,
            &format!("Member must have length greater than or equal to {lo}"),
        ));
    }
    if n > hi {
        return Err(KmsError::constraint(
            v,
            field,
            &format!("Member must have length less than or equal to {hi}"),
        ));
    }
    Ok(())
}

/// `GrantTokens`: at most 10, each of 1 to 8192 characters. This server issues no grants, so a
/// well-formed token changes nothing.
pub(super) fn check_grant_tokens(tokens: Option<&[String]>) -> Result<()> {
    let tokens = tokens.unwrap_or_default();
    if tokens.len() > 10 {
        return Err(KmsError::constraint(
            format!("[{} tokens]", tokens.len()),
            "grantTokens",
            "Member must have length less than or equal to 10",
        ));
    }
    for (i, t) in tokens.iter().enumerate() {
        check_length(t, 1, 8192, &format!("grantTokens.{}.member", i + 1))?;
    }
    Ok(())
}

/// A custom key store id as a request names it: 1 to 64 characters.
pub(super) fn check_custom_key_store_id(id: &str) -> Result<()> {
    check_length(id, 1, 64, "customKeyStoreId")
}

pub(super) fn page_limit(limit: Option<i64>, max: i64, default: i64) -> Result<i64> {
    let l = limit.unwrap_or(default);
    check_range(l, 1, max, "limit")?;
    Ok(l)
}

/// Cuts `rows`, read with one more than `limit`, to a page: whether more follow, and the marker
/// that continues after the page's last row (`marker` says what of a row it holds).
pub(super) fn page<T>(
    rows: &mut Vec<T>,
    limit: i64,
    marker: impl Fn(&T) -> String,
) -> (bool, Option<String>) {
    let truncated = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_marker = truncated
        .then(|| rows.last().map(|r| encode_marker(&marker(r))))
        .flatten();
    (truncated, next_marker)
}

/// A key's description: at most 8192 characters.
pub(super) fn check_description(description: &str) -> Result<()> {
    if description.chars().count() > 8192 {
        return Err(KmsError::constraint(
            "...",
            "description",
            "Member must have length less than or equal to 8192",
        ));
    }
    Ok(())
}

fn encode_marker(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s.as_bytes())
}

/// A paging marker: 1 to 1024 characters (AWS's model), then one this service returned.
pub(super) fn decode_marker(m: Option<&str>) -> Result<Option<String>> {
    if let Some(m) = m {
        check_length(m, 1, 1024, "marker")?;
    }
    m.map(|m| {
        URL_SAFE_NO_PAD
            .decode(m.as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                KmsError::InvalidMarker("The marker is not one this service returned.".into())
            })
    })
    .transpose()
}

pub(super) fn check_algorithm(alg: Option<&str>) -> Result<()> {
    match alg {
        None | Some(SYMMETRIC_DEFAULT) => Ok(()),
        Some(a @ ("RSAES_OAEP_SHA_1" | "RSAES_OAEP_SHA_256" | "SM2PKE")) => Err(KmsError::InvalidKeyUsage(
            format!("The encryption algorithm {a} is not compatible with the key spec SYMMETRIC_DEFAULT."),
        )),
        Some(a) => Err(KmsError::constraint(
            a,
            "encryptionAlgorithm",
            "Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]",
        )),
    }
}

/// `Recipient` (a Nitro Enclaves attestation document) is not supported.
pub(super) fn refuse_recipient(recipient: Option<&serde_json::Value>) -> Result<()> {
    if recipient.is_some() {
        return Err(KmsError::UnsupportedOperation(
            "Recipient (Nitro Enclaves attestation) is not supported.".into(),
        ));
    }
    Ok(())
}

pub(super) fn check_dry_run(dry_run: Option<bool>) -> Result<()> {
    if dry_run == Some(true) {
        return Err(KmsError::DryRunOperation(
            "The request would have succeeded, but the DryRun option is set.".into(),
        ));
    }
    Ok(())
}

pub(super) fn context(pairs: Option<BTreeMap<String, String>>) -> Result<EncryptionContext> {
    EncryptionContext::new(pairs.unwrap_or_default())
}
