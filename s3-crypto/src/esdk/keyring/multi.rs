//! The multi-keyring: one generator and any number of children.

use crate::data_key::{
    DecryptionMaterials, EncryptedDataKey, EncryptionMaterials, Keyring, KeyringFuture,
};
use crate::error::{Error, Result};

/// Combines keyrings. On encrypt, the generator (if any) produces and wraps the data key, then every
/// child wraps it too (one encrypted data key each). On decrypt, the generator and then each child is
/// tried in order until one unwraps a data key; a child's failure (say, a key service unreachable) is
/// remembered and reported only if no keyring succeeds.
pub struct MultiKeyring {
    generator: Option<Box<dyn Keyring>>,
    children: Vec<Box<dyn Keyring>>,
}

impl std::fmt::Debug for MultiKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiKeyring")
            .field("has_generator", &self.generator.is_some())
            .field("children", &self.children.len())
            .finish()
    }
}

impl MultiKeyring {
    /// A multi-keyring. Without a generator, encryption needs materials that already carry a data key,
    /// so in practice a generator is needed to encrypt; decryption works either way.
    pub fn new(
        generator: Option<Box<dyn Keyring>>,
        children: Vec<Box<dyn Keyring>>,
    ) -> Result<Self> {
        if generator.is_none() && children.is_empty() {
            return Err(Error::InvalidConfiguration(
                "a multi-keyring needs a generator or at least one child".into(),
            ));
        }
        Ok(Self {
            generator,
            children,
        })
    }
}

impl Keyring for MultiKeyring {
    fn on_encrypt<'a>(
        &'a self,
        mut materials: EncryptionMaterials,
    ) -> KeyringFuture<'a, EncryptionMaterials> {
        Box::pin(async move {
            match &self.generator {
                Some(g) => {
                    materials = g.on_encrypt(materials).await?;
                    if materials.data_key.is_none() {
                        return Err(Error::Keyring("the generator produced no data key".into()));
                    }
                }
                None if materials.data_key.is_none() => {
                    return Err(Error::Keyring(
                        "a multi-keyring without a generator cannot create a data key".into(),
                    ))
                }
                None => {}
            }
            for child in &self.children {
                materials = child.on_encrypt(materials).await?;
            }
            Ok(materials)
        })
    }

    fn on_decrypt<'a>(
        &'a self,
        mut materials: DecryptionMaterials,
        encrypted_data_keys: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        Box::pin(async move {
            if materials.data_key.is_some() {
                return Ok(materials);
            }
            let mut first_error = None;
            for k in self.generator.iter().chain(self.children.iter()) {
                // Keyrings take materials by value; keep what we need to retry with the next one.
                let retry =
                    DecryptionMaterials::new(materials.suite, materials.encryption_context.clone());
                match k.on_decrypt(materials, encrypted_data_keys).await {
                    Ok(m) if m.data_key.is_some() => return Ok(m),
                    Ok(m) => materials = m,
                    Err(e) => {
                        first_error.get_or_insert(e);
                        materials = retry;
                    }
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(materials),
            }
        })
    }
}
