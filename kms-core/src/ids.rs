//! Key identifiers as AWS writes them: key id, key ARN, alias name, alias ARN.

use uuid::Uuid;

use crate::error::{KmsError, Result};

/// Where keys live: the region and account in every ARN this service returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Region, e.g. `us-east-1`.
    pub region: String,
    /// Twelve-digit account id.
    pub account_id: String,
}

/// What a caller's key identifier names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A key, by id or ARN.
    Key(Uuid),
    /// An alias, by name (`alias/...`) or ARN.
    Alias(String),
}

/// Whether an operation accepts aliases for the key (AWS's rule per operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// Key id or key ARN only.
    KeyOnly,
    /// Key id, key ARN, alias name or alias ARN.
    KeyOrAlias,
}

impl Partition {
    /// `arn:aws:kms:<region>:<account>:key/<id>`.
    pub fn key_arn(&self, id: &Uuid) -> String {
        format!("arn:aws:kms:{}:{}:key/{}", self.region, self.account_id, id)
    }

    /// `arn:aws:kms:<region>:<account>:alias/<name>` for an alias name `alias/<name>`.
    pub fn alias_arn(&self, alias_name: &str) -> String {
        format!(
            "arn:aws:kms:{}:{}:{}",
            self.region, self.account_id, alias_name
        )
    }

    /// `arn:aws:iam::<account>:user/<name>`.
    pub fn user_arn(&self, name: &str) -> String {
        format!("arn:aws:iam::{}:user/{}", self.account_id, name)
    }

    /// Parses a key identifier in any of AWS's four forms.
    pub fn parse_key_ref(&self, raw: &str, accepts: Accepts) -> Result<KeyRef> {
        self.parse_key_name(raw, accepts).map(|n| n.key)
    }

    /// Parses a key identifier in any of AWS's four forms, with the account an ARN names (a key id
    /// or alias name is in the caller's account). An ARN must name this server's region.
    pub fn parse_key_name(&self, raw: &str, accepts: Accepts) -> Result<KeyName> {
        let not_found = || KmsError::NotFound(format!("Invalid keyId '{raw}'"));
        if raw.is_empty() || raw.len() > 2048 {
            return Err(KmsError::constraint(
                raw,
                "keyId",
                "Member must have length between 1 and 2048",
            ));
        }
        let (account, resource) = if let Some(rest) = raw.strip_prefix("arn:") {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            if parts.len() != 5 || parts[0] != "aws" || parts[1] != "kms" {
                return Err(not_found());
            }
            if parts[2] != self.region || !is_account_id(parts[3]) {
                return Err(KmsError::NotFound(format!(
                    "Key '{raw}' does not exist in region {}",
                    self.region
                )));
            }
            (Some(parts[3].to_string()), parts[4])
        } else {
            (None, raw)
        };
        // `key/<id>` names a key only inside an ARN; alone it is no identifier.
        let r = if let Some(id) = resource
            .strip_prefix("key/")
            .filter(|_| raw.starts_with("arn:"))
        {
            KeyRef::Key(Uuid::parse_str(id).map_err(|_| not_found())?)
        } else if resource.starts_with("alias/") {
            KeyRef::Alias(resource.to_string())
        } else if raw.starts_with("arn:") {
            return Err(not_found());
        } else {
            KeyRef::Key(Uuid::parse_str(resource).map_err(|_| not_found())?)
        };
        if accepts == Accepts::KeyOnly && matches!(r, KeyRef::Alias(_)) {
            return Err(not_found());
        }
        Ok(KeyName { account, key: r })
    }

    /// `arn:aws:kms:<region>:<account>:key/<id>` of a key of `account`.
    pub fn key_arn_in(&self, account: &str, id: &Uuid) -> String {
        format!("arn:aws:kms:{}:{account}:key/{id}", self.region)
    }

    /// `arn:aws:kms:<region>:<account>:alias/<name>` of an alias of `account`.
    pub fn alias_arn_in(&self, account: &str, alias_name: &str) -> String {
        format!("arn:aws:kms:{}:{account}:{alias_name}", self.region)
    }
}

/// A key identifier as a request gives it: what it names, and the account when it is an ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName {
    /// The account an ARN names; `None` for a key id or alias name (the caller's account).
    pub account: Option<String>,
    /// The key or alias.
    pub key: KeyRef,
}

/// Twelve decimal digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Checks an alias name as AWS does, in AWS's order and with its answers: the length (1 to 256) and
/// the pattern `^[a-zA-Z0-9:/_-]+$` of the API's model (`ValidationException`), then the `alias/`
/// prefix and no `:` (`ValidationException`, AWS's messages), then, when `creating`, the prefix
/// `alias/aws/` that AWS keeps for its managed keys (`NotAuthorizedException`).
pub fn validate_alias_name(name: &str, creating: bool) -> Result<()> {
    let constraint = |c: &str| KmsError::constraint(name, "aliasName", c);
    let len = name.chars().count();
    if len < 1 {
        return Err(constraint(
            "Member must have length greater than or equal to 1",
        ));
    }
    if len > 256 {
        return Err(constraint(
            "Member must have length less than or equal to 256",
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'_' | b'-'))
    {
        return Err(constraint(
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
        ));
    }
    let Some(rest) = name.strip_prefix("alias/") else {
        return Err(KmsError::Validation(
            "Alias must start with the prefix \"alias/\". Please see \
             https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
                .into(),
        ));
    };
    if rest.is_empty() {
        return Err(KmsError::Validation(
            "Alias must be more than the prefix \"alias/\".".into(),
        ));
    }
    if name.contains(':') {
        return Err(KmsError::Validation(format!(
            "{name} contains invalid characters for an alias"
        )));
    }
    if creating && rest.starts_with("aws/") {
        return Err(KmsError::NotAuthorized(
            "Cannot create alias with prefix 'alias/aws/'".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Partition {
        Partition {
            region: "us-east-1".into(),
            account_id: "111122223333".into(),
        }
    }

    #[test]
    fn parses_all_four_forms() {
        let id = Uuid::new_v4();
        let p = p();
        assert_eq!(
            p.parse_key_ref(&id.to_string(), Accepts::KeyOnly).unwrap(),
            KeyRef::Key(id)
        );
        assert_eq!(
            p.parse_key_ref(&p.key_arn(&id), Accepts::KeyOnly).unwrap(),
            KeyRef::Key(id)
        );
        assert_eq!(
            p.parse_key_ref("alias/app", Accepts::KeyOrAlias).unwrap(),
            KeyRef::Alias("alias/app".into())
        );
        assert_eq!(
            p.parse_key_ref(&p.alias_arn("alias/app"), Accepts::KeyOrAlias)
                .unwrap(),
            KeyRef::Alias("alias/app".into())
        );
    }

    #[test]
    fn rejects_aliases_where_aws_does_and_foreign_arns() {
        let p = p();
        assert!(matches!(
            p.parse_key_ref("alias/app", Accepts::KeyOnly),
            Err(KmsError::NotFound(_))
        ));
        assert!(matches!(
            p.parse_key_ref("nonsense", Accepts::KeyOrAlias),
            Err(KmsError::NotFound(_))
        ));
        let foreign = format!("arn:aws:kms:eu-west-1:111122223333:key/{}", Uuid::new_v4());
        assert!(matches!(
            p.parse_key_ref(&foreign, Accepts::KeyOnly),
            Err(KmsError::NotFound(_))
        ));
        assert!(matches!(
            p.parse_key_ref("", Accepts::KeyOnly),
            Err(KmsError::Validation(_))
        ));
    }

    #[test]
    fn alias_rules() {
        assert!(validate_alias_name("alias/app-1_x/y", true).is_ok());
        for bad in ["app", "alias/", "alias/sp ace", "alias/aws/s3", "alias/é"] {
            assert!(validate_alias_name(bad, true).is_err(), "{bad}");
        }
        assert!(validate_alias_name("alias/aws/s3", false).is_ok());
    }
}
