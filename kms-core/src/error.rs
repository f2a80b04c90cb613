//! The error type of the key service. Each variant is one AWS KMS exception, named as it is on the wire.

/// An error from a key service operation. The message never contains key material or secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The key, alias or other resource does not exist (`NotFoundException`).
    #[error("{0}")]
    NotFound(String),
    /// The key is disabled (`DisabledException`).
    #[error("{0}")]
    Disabled(String),
    /// The key's state does not allow the operation (`KMSInvalidStateException`).
    #[error("{0}")]
    InvalidState(String),
    /// The ciphertext is not valid, or the encryption context does not match (`InvalidCiphertextException`).
    #[error("{0}")]
    InvalidCiphertext(String),
    /// The key named in the request is not the key that encrypted the ciphertext (`IncorrectKeyException`).
    #[error("{0}")]
    IncorrectKey(String),
    /// A parameter is missing or out of range (`ValidationException`).
    #[error("{0}")]
    Validation(String),
    /// The resource already exists (`AlreadyExistsException`).
    #[error("{0}")]
    AlreadyExists(String),
    /// The alias name is not valid or is reserved (`InvalidAliasNameException`).
    #[error("{0}")]
    InvalidAliasName(String),
    /// The request asks for something envelope does not support (`UnsupportedOperationException`).
    #[error("{0}")]
    UnsupportedOperation(String),
    /// The key's usage or spec does not fit the operation or algorithm (`InvalidKeyUsageException`).
    #[error("{0}")]
    InvalidKeyUsage(String),
    /// A paging marker was not one this service returned (`InvalidMarkerException`).
    #[error("{0}")]
    InvalidMarker(String),
    /// A tag key or value is not valid (`TagException`).
    #[error("{0}")]
    Tag(String),
    /// The caller may not do this, whatever its permissions: an alias under the `alias/aws/` prefix
    /// AWS keeps for its managed keys (`NotAuthorizedException`).
    #[error("{0}")]
    NotAuthorized(String),
    /// The policy engine denied the request (`AccessDeniedException`); the message is AWS's ("User:
    /// ARN is not authorized to perform: ACTION on resource: ARN because …").
    #[error("{0}")]
    AccessDenied(String),
    /// A key policy is not valid JSON or grammar, names an unknown principal, or would lock the caller
    /// out (`MalformedPolicyDocumentException`).
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// A per-key limit was reached (`LimitExceededException`).
    #[error("{0}")]
    LimitExceeded(String),
    /// The request body is not JSON of the expected shape (`SerializationException`).
    #[error("{0}")]
    Serialization(String),
    /// The operation name is unknown (`UnknownOperationException`).
    #[error("{0}")]
    UnknownOperation(String),
    /// The request would have succeeded but asked for a dry run (`DryRunOperationException`).
    #[error("{0}")]
    DryRunOperation(String),
    /// A failure inside the service: the store, the root of trust (`KMSInternalException`).
    #[error("{0}")]
    Internal(String),
    /// No custom key store has this id or name (`CustomKeyStoreNotFoundException`).
    #[error("{0}")]
    CustomKeyStoreNotFound(String),
    /// The custom key store's connection state does not allow the operation
    /// (`CustomKeyStoreInvalidStateException`).
    #[error("{0}")]
    CustomKeyStoreInvalidState(String),
    /// The custom key store still holds KMS keys (`CustomKeyStoreHasCMKsException`).
    #[error("{0}")]
    CustomKeyStoreHasCmks(String),
    /// Another custom key store has this name (`CustomKeyStoreNameInUseException`).
    #[error("{0}")]
    CustomKeyStoreNameInUse(String),
    /// No CloudHSM cluster with this id is configured on this server
    /// (`CloudHsmClusterNotFoundException`).
    #[error("{0}")]
    CloudHsmClusterNotFound(String),
    /// The cluster already backs another custom key store (`CloudHsmClusterInUseException`).
    #[error("{0}")]
    CloudHsmClusterInUse(String),
    /// The new cluster is not the store's token under another id
    /// (`CloudHsmClusterNotRelatedException`).
    #[error("{0}")]
    CloudHsmClusterNotRelated(String),
    /// A grant token is malformed, or was not issued by this service (`InvalidGrantTokenException`).
    #[error("{0}")]
    InvalidGrantToken(String),
    /// A grant id is not one of this service's (`InvalidGrantIdException`).
    #[error("{0}")]
    InvalidGrantId(String),
    /// An ARN in the request is not valid for its place, such as a grantee principal that is not an
    /// IAM principal's ARN (`InvalidArnException`).
    #[error("{0}")]
    InvalidArn(String),
}

impl KmsError {
    /// The exception name AWS KMS uses for this error (the `__type` on the wire).
    pub fn aws_name(&self) -> &'static str {
        match self {
            KmsError::NotFound(_) => "NotFoundException",
            KmsError::Disabled(_) => "DisabledException",
            KmsError::InvalidState(_) => "KMSInvalidStateException",
            KmsError::InvalidCiphertext(_) => "InvalidCiphertextException",
            KmsError::IncorrectKey(_) => "IncorrectKeyException",
            KmsError::Validation(_) => "ValidationException",
            KmsError::AlreadyExists(_) => "AlreadyExistsException",
            KmsError::InvalidAliasName(_) => "InvalidAliasNameException",
            KmsError::UnsupportedOperation(_) => "UnsupportedOperationException",
            KmsError::InvalidKeyUsage(_) => "InvalidKeyUsageException",
            KmsError::InvalidMarker(_) => "InvalidMarkerException",
            KmsError::Tag(_) => "TagException",
            KmsError::NotAuthorized(_) => "NotAuthorizedException",
            KmsError::AccessDenied(_) => "AccessDeniedException",
            KmsError::MalformedPolicyDocument(_) => "MalformedPolicyDocumentException",
            KmsError::LimitExceeded(_) => "LimitExceededException",
            KmsError::Serialization(_) => "SerializationException",
            KmsError::UnknownOperation(_) => "UnknownOperationException",
            KmsError::DryRunOperation(_) => "DryRunOperationException",
            KmsError::Internal(_) => "KMSInternalException",
            KmsError::CustomKeyStoreNotFound(_) => "CustomKeyStoreNotFoundException",
            KmsError::CustomKeyStoreInvalidState(_) => "CustomKeyStoreInvalidStateException",
            KmsError::CustomKeyStoreHasCmks(_) => "CustomKeyStoreHasCMKsException",
            KmsError::CustomKeyStoreNameInUse(_) => "CustomKeyStoreNameInUseException",
            KmsError::CloudHsmClusterNotFound(_) => "CloudHsmClusterNotFoundException",
            KmsError::CloudHsmClusterInUse(_) => "CloudHsmClusterInUseException",
            KmsError::CloudHsmClusterNotRelated(_) => "CloudHsmClusterNotRelatedException",
            KmsError::InvalidGrantToken(_) => "InvalidGrantTokenException",
            KmsError::InvalidGrantId(_) => "InvalidGrantIdException",
            KmsError::InvalidArn(_) => "InvalidArnException",
        }
    }

    /// True for errors caused by the service rather than the request (HTTP 500 on the wire).
    pub fn is_internal(&self) -> bool {
        matches!(self, KmsError::Internal(_))
    }

    /// The HTTP status the endpoint answers it with: 500 for the service's faults, 412 for a dry
    /// run that would have succeeded (KMS's model: `DryRunOperationException` is
    /// `httpError: 412`, as EC2's `DryRunOperation` is), 400 for the rest.
    pub fn http_status(&self) -> u16 {
        match self {
            KmsError::Internal(_) => 500,
            KmsError::DryRunOperation(_) => 412,
            _ => 400,
        }
    }

    /// AWS's wording for a failed constraint, e.g. `Value '5' at 'pendingWindowInDays' failed to
    /// satisfy constraint: Member must have value greater than or equal to 7`.
    pub(crate) fn constraint(value: impl std::fmt::Display, field: &str, constraint: &str) -> Self {
        KmsError::Validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
        ))
    }

    /// A required member was absent.
    pub(crate) fn missing(field: &str) -> Self {
        KmsError::Validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    }
}

impl From<sqlx::Error> for KmsError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "key store error");
        KmsError::Internal("The key store failed; the request was not carried out.".into())
    }
}

/// Shorthand for results of key service operations.
pub type Result<T, E = KmsError> = std::result::Result<T, E>;
