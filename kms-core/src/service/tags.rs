//! Tags: TagResource, UntagResource and ListResourceTags, and the rules a tag follows (CreateKey
//! takes tags too): at most 50 on a key, keys of 1 to 128 characters, values of at most 256, no
//! `aws:` prefix.

use super::keys::check_not_pending_deletion;
use super::validate::{decode_marker, page, page_limit, required};
use super::Kms;
use crate::api::*;
use crate::error::{KmsError, Result};

pub(super) fn validate_tags(tags: &[Tag]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(tags.len());
    for t in tags {
        let k = t
            .tag_key
            .clone()
            .ok_or_else(|| KmsError::missing("tags.member.tagKey"))?;
        let v = t
            .tag_value
            .clone()
            .ok_or_else(|| KmsError::missing("tags.member.tagValue"))?;
        if k.is_empty() || k.chars().count() > 128 {
            return Err(KmsError::Tag(format!(
                "Tag key '{k}' must be 1 to 128 characters long."
            )));
        }
        if v.chars().count() > 256 {
            return Err(KmsError::Tag(format!(
                "The value of tag '{k}' must be at most 256 characters long."
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(KmsError::Tag(format!(
                "Tag key '{k}' uses the reserved prefix 'aws:'."
            )));
        }
        out.push((k, v));
    }
    Ok(out)
}

impl Kms {
    /// TagResource: adds tags or replaces their values.
    pub async fn tag_resource(&self, req: TagResourceRequest) -> Result<Empty> {
        let id = self.key_named(req.key_id).await?;
        let tags = validate_tags(&required(req.tags, "tags")?)?;
        self.checked_key(&id, check_not_pending_deletion).await?;
        self.store.put_tags(&id, &tags).await?;
        if self.store.count_tags(&id).await? > 50 {
            let keys: Vec<String> = tags.into_iter().map(|(k, _)| k).collect();
            self.store.delete_tags(&id, &keys).await?;
            return Err(KmsError::Tag("A key can have at most 50 tags.".into()));
        }
        Ok(Empty {})
    }

    /// UntagResource.
    pub async fn untag_resource(&self, req: UntagResourceRequest) -> Result<Empty> {
        let id = self.key_named(req.key_id).await?;
        let keys = required(req.tag_keys, "tagKeys")?;
        self.checked_key(&id, check_not_pending_deletion).await?;
        self.store.delete_tags(&id, &keys).await?;
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
