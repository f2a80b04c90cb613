//! The errors of the IAM and STS Query APIs, named as AWS names them on the wire
//! (`<Error><Code>NoSuchEntity</Code>…`), each knowing its HTTP status.

use crate::error::KmsError;

/// An IAM or STS error. The message never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IamError {
    /// The user, group, role, policy or access key does not exist (`NoSuchEntity`, 404).
    #[error("{0}")]
    NoSuchEntity(String),
    /// The name is taken (`EntityAlreadyExists`, 409).
    #[error("{0}")]
    EntityAlreadyExists(String),
    /// The policy document is not valid (`MalformedPolicyDocument`, 400).
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// A quota was reached: access keys per user, policy size (`LimitExceeded`, 409).
    #[error("{0}")]
    LimitExceeded(String),
    /// A parameter is missing, too long, or does not match its pattern (`ValidationError`, 400).
    #[error("{0}")]
    Validation(String),
    /// A parameter's value is not acceptable (`InvalidInput`, 400).
    #[error("{0}")]
    InvalidInput(String),
    /// The entity still has what must go first (`DeleteConflict`, 409).
    #[error("{0}")]
    DeleteConflict(String),
    /// The policy engine denied the request (`AccessDenied`, 403), with AWS's message.
    #[error("{0}")]
    AccessDenied(String),
    /// The action is not one this service knows (`InvalidAction`, 400).
    #[error("{0}")]
    InvalidAction(String),
    /// A failure inside the service (`ServiceFailure`, 500).
    #[error("{0}")]
    ServiceFailure(String),
}

impl IamError {
    /// AWS's error code.
    pub fn code(&self) -> &'static str {
        match self {
            IamError::NoSuchEntity(_) => "NoSuchEntity",
            IamError::EntityAlreadyExists(_) => "EntityAlreadyExists",
            IamError::MalformedPolicyDocument(_) => "MalformedPolicyDocument",
            IamError::LimitExceeded(_) => "LimitExceeded",
            IamError::Validation(_) => "ValidationError",
            IamError::InvalidInput(_) => "InvalidInput",
            IamError::DeleteConflict(_) => "DeleteConflict",
            IamError::AccessDenied(_) => "AccessDenied",
            IamError::InvalidAction(_) => "InvalidAction",
            IamError::ServiceFailure(_) => "ServiceFailure",
        }
    }

    /// The HTTP status AWS answers it with.
    pub fn status(&self) -> u16 {
        match self {
            IamError::NoSuchEntity(_) => 404,
            IamError::EntityAlreadyExists(_)
            | IamError::LimitExceeded(_)
            | IamError::DeleteConflict(_) => 409,
            IamError::AccessDenied(_) => 403,
            IamError::ServiceFailure(_) => 500,
            _ => 400,
        }
    }

    /// Whether the caller is at fault (`<Type>Sender</Type>`) rather than the service (`Receiver`).
    pub fn is_sender(&self) -> bool {
        !matches!(self, IamError::ServiceFailure(_))
    }

    /// AWS's wording for a failed constraint on `field`.
    pub(crate) fn constraint(value: &str, field: &str, constraint: &str) -> IamError {
        IamError::Validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
        ))
    }

    /// A required parameter was absent.
    pub(crate) fn missing(field: &str) -> IamError {
        IamError::Validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    }
}

impl From<KmsError> for IamError {
    fn from(e: KmsError) -> Self {
        match e {
            KmsError::AccessDenied(m) => IamError::AccessDenied(m),
            KmsError::AlreadyExists(m) => IamError::EntityAlreadyExists(m),
            KmsError::NotFound(m) => IamError::NoSuchEntity(m),
            KmsError::Validation(m) => IamError::Validation(m),
            KmsError::LimitExceeded(m) => IamError::LimitExceeded(m),
            other if other.is_internal() => IamError::ServiceFailure(other.to_string()),
            other => IamError::InvalidInput(other.to_string()),
        }
    }
}

impl From<crate::policy::PolicyError> for IamError {
    fn from(e: crate::policy::PolicyError) -> Self {
        match e {
            crate::policy::PolicyError::TooLarge { .. } => IamError::LimitExceeded(e.to_string()),
            e => IamError::MalformedPolicyDocument(e.to_string()),
        }
    }
}
