//! Operations of key kinds this server does not make (asymmetric and HMAC keys, data key pairs,
//! imported key material): after the key is found, refused with the reason AWS gives for the key
//! this server has.

use super::keys::refuse_for_custom_key_store;
use super::validate::required;
use super::Kms;
use crate::api::*;
use crate::error::{KmsError, Result};
use crate::ids::Accepts;

/// Operations of key kinds this server does not create ([`Kms::refuse_on_symmetric_key`]).
pub(super) const ASYMMETRIC_AND_HMAC_OPERATIONS: [&str; 8] = [
    "Sign",
    "Verify",
    "GenerateMac",
    "VerifyMac",
    "GetPublicKey",
    "DeriveSharedSecret",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
];

impl Kms {
    /// GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial: refused, with the
    /// reason AWS gives for the key's kind.
    pub async fn import_key_material(&self, req: KeyIdRequest) -> Result<Empty> {
        let id = self.key_named(req.key_id).await?;
        let rec = self.record(&id).await?;
        let arn = self.arn(&id);
        refuse_for_custom_key_store(&rec, &arn, "imported key material")?;
        Err(KmsError::UnsupportedOperation(format!(
            "{arn} has Origin {}: only keys with Origin EXTERNAL take imported key material, and \
             this server does not create them.",
            rec.origin
        )))
    }

    /// The operations of asymmetric and HMAC keys, and data key pairs, on this server, whose keys
    /// are all symmetric encryption keys: after the key is found, refused as AWS refuses them for
    /// such a key (InvalidKeyUsageException for a key usage that does not fit; UnsupportedOperation
    /// for GetPublicKey, and for data key pairs, which a key in a custom key store cannot make on AWS
    /// either and this server does not make at all).
    pub async fn refuse_on_symmetric_key(
        &self,
        operation: &str,
        req: KeyIdRequest,
    ) -> Result<Empty> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOrAlias, false)
            .await?;
        let rec = self.record(&id).await?;
        let arn = self.arn(&id);
        match operation {
            "GetPublicKey" => Err(KmsError::UnsupportedOperation(format!(
                "{arn} is a symmetric encryption key: it has no public key."
            ))),
            "GenerateDataKeyPair" | "GenerateDataKeyPairWithoutPlaintext" => {
                refuse_for_custom_key_store(&rec, &arn, "GenerateDataKeyPair")?;
                Err(KmsError::UnsupportedOperation(format!(
                    "{operation} is not supported by this server (it makes no asymmetric keys)."
                )))
            }
            _ => Err(KmsError::InvalidKeyUsage(format!(
                "{arn} has KeyUsage ENCRYPT_DECRYPT and KeySpec SYMMETRIC_DEFAULT: {operation} needs \
                 an asymmetric or HMAC key of another usage."
            ))),
        }
    }
}
