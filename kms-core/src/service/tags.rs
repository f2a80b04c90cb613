//! Tags: TagResource, UntagResource and ListResourceTags, and the rules a tag follows (CreateKey
//! takes tags too): at most 50 on a key, keys of 1 to 128 characters, values of at most 256, no
//! key twice in one request, no `aws:` prefix.

use super::keys::check_not_pending_deletion;
use super::validate::{check_length, decode_marker, page, page_limit, required};
use super::Kms;
use crate::api::*;
use crate::error::{KmsError, Result};

/// At most this many tags on a key.
const MAX_TAGS: usize = 50;

/// Checks the tags of a CreateKey or TagResource: each has a key of 1 to 128 and a value of at most
/// 256 characters (AWS's `ValidationException`), no key twice and none under `aws:`
/// (`TagException`).
pub(super) fn validate_tags(tags: &[Tag]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(tags.len());
    for (i, t) in tags.iter().enumerate() {
        let field = |m: &str| format!("tags.{}.member.{m}", i + 1);
        let k = t
            .tag_key
            .clone()
            .ok_or_else(|| KmsError::missing(&field("tagKey")))?;
        let v = t
            .tag_value
            .clone()
            .ok_or_else(|| KmsError::missing(&field("tagValue")))?;
        check_length(&k, 1, 128, &field("tagKey"))?;
        check_length(&v, 0, 256, &field("tagValue"))?;
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(KmsError::Tag(format!(
                "Tag key '{k}' uses the reserved prefix 'aws:'."
            )));
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(KmsError::Tag(format!(
                "Duplicate tag keys: '{k}' is given more than once."
            )));
        }
        out.push((k, v));
    }
    if out.len() > MAX_TAGS {
        return Err(too_many_tags());
    }
    Ok(out)
}

fn too_many_tags() -> KmsError {
    KmsError::Tag(format!("A key can have at most {MAX_TAGS} tags."))
}

impl Kms {
    /// TagResource: adds tags or replaces their values.
    pub async fn tag_resource(&self, req: TagResourceRequest) -> Result<Empty> {
        let id = self.key_named(req.key_id).await?;
        let tags = validate_tags(&required(req.tags, "tags")?)?;
        self.checked_key(&id, check_not_pending_deletion).await?;
        // One transaction that counts before it writes: a request that would leave more than 50
        // tags changes nothing.
        if !self.store.put_tags(&id, &tags, MAX_TAGS).await? {
            return Err(too_many_tags());
        }
        // Tags are condition keys (aws:ResourceTag): decided with the new ones at once here.
        self.cache.key_auth.forget(&id.to_string());
        Ok(Empty {})
    }

    /// UntagResource.
    pub async fn untag_resource(&self, req: UntagResourceRequest) -> Result<Empty> {
        let id = self.key_named(req.key_id).await?;
        let keys = required(req.tag_keys, "tagKeys")?;
        for (i, k) in keys.iter().enumerate() {
            check_length(k, 1, 128, &format!("tagKeys.{}.member", i + 1))?;
        }
        self.checked_key(&id, check_not_pending_deletion).await?;
        self.store.delete_tags(&id, &keys).await?;
        self.cache.key_auth.forget(&id.to_string());
        Ok(Empty {})
    }

    /// ListResourceTags.
    pub async fn list_resource_tags(
        &self,
        req: ListResourceTagsRequest,
    ) -> Result<ListResourceTagsResponse> {
        let id = self.key_named(req.key_id).await?;
        let limit = page_limit(req.limit, 50, 50)?;
        self.record(&id).await?;
        let after = decode_marker(req.marker.as_deref())?;
        let mut rows = self
            .store
            .list_tags(&id, after.as_deref(), limit + 1)
            .await?;
        let (truncated, next_marker) = page(&mut rows, limit, |(k, _)| k.clone());
        Ok(ListResourceTagsResponse {
            tags: rows
                .into_iter()
                .map(|(k, v)| Tag {
                    tag_key: Some(k),
                    tag_value: Some(v),
                })
                .collect(),
            truncated,
            next_marker,
        })
    }
}
