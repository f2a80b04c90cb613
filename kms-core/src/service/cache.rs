//! What the service keeps between calls: keys with their unwrapped material (reloaded by one caller
//! when an entry expires, reusing material whose wrapped bytes did not change), alias mappings,
//! principals' secrets and custom key store rows, each for the configured TTL.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;
use zeroize::Zeroizing;

use super::root::{material_aad, off_runtime};
use super::Kms;
use crate::error::{KmsError, Result};
use crate::material::KeyMaterial;
use crate::store::{CustomKeyStoreRow, KeyRow};

/// The service's caches. With several nodes on one database, a change made on one node reaches the
/// others when their entries expire; on the node that made it, at once: a change forgets what it
/// changed, and a load that read the store before the change does not put what it read (each cache
/// counts its changes, and a load puts only if the count is what it was when the load began).
#[derive(Default)]
pub(super) struct Caches {
    /// Keys with their unwrapped material, by key id.
    keys: RwLock<HashMap<Uuid, Arc<LoadedKey>>>,
    /// Changes to keys on this node ([`Kms::invalidate`]).
    keys_changed: Changes,
    /// Alias name to key id.
    pub(super) aliases: Expiring<Uuid>,
    /// Principals' secrets, by access key id.
    pub(super) principals: RwLock<HashMap<String, Arc<CachedPrincipal>>>,
    /// Access keys deleted or deactivated on this node.
    pub(super) principals_changed: Changes,
    /// Every access key id the store holds, as last read: the negative cache that answers an
    /// unknown access key without a store query.
    pub(super) known_access_keys: tokio::sync::Mutex<KnownAccessKeys>,
    /// Custom key store rows, by store id.
    pub(super) store_rows: Expiring<CustomKeyStoreRow>,
    /// The account of every key seen (a key never changes account), for its ARN.
    pub(super) key_accounts: RwLock<HashMap<Uuid, Arc<str>>>,
    /// What authorizing a call on a key needs (its policy compiled, tags, aliases), by key id.
    pub(super) key_auth: Expiring<Arc<super::authorize::KeyAuth>>,
    /// Each key's grants as the policy engine weighs them, by key id.
    pub(super) grants: Expiring<Arc<[crate::policy::Grant]>>,
    /// The grant token MAC key, unwrapped.
    pub(super) grant_token_key: tokio::sync::OnceCell<Arc<Zeroizing<Vec<u8>>>>,
}

/// The access key ids of the store's principals, read whole (one query) at most once per
/// [`KnownAccessKeys::MIN_RELOAD`]. Bounded by the principals the store holds, never by what
/// requests name.
#[derive(Default)]
pub(super) struct KnownAccessKeys {
    pub(super) ids: std::collections::HashSet<String>,
    /// When `ids` was read from the store.
    pub(super) loaded: Option<Instant>,
    /// How many times it was read (for tests).
    pub(super) loads: u64,
}

impl KnownAccessKeys {
    /// The shortest time between two reads: a flood of unknown access keys costs the store at most
    /// one query per this interval, and a principal created by another process (the CLI, another
    /// node) is known to this one at most this long after.
    pub(super) const MIN_RELOAD: Duration = Duration::from_millis(100);
}

/// Values by name, each serving for a TTL after it was put.
pub(super) struct Expiring<V> {
    entries: RwLock<HashMap<String, (V, Instant)>>,
    changes: Changes,
}

impl<V> Default for Expiring<V> {
    fn default() -> Self {
        Self {
            entries: RwLock::default(),
            changes: Changes::default(),
        }
    }
}

/// How many changes a cache has been told of, by stripe of names: a load takes a [`Ticket`] for
/// its name before it reads the store, and puts what it read only if no change in that name's stripe
/// came since. Without it, a load that read a key just before DisableKey committed put the enabled
/// key back after DisableKey forgot it, and the key served for a whole TTL more on the node that
/// disabled it. Striped so that steady changes to some keys do not keep every other key from being
/// cached (and read from the store again on every call).
pub(super) struct Changes([AtomicU64; STRIPES]);

const STRIPES: usize = 64;

impl Default for Changes {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// A stripe's count of changes when a load began.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Ticket {
    stripe: usize,
    count: u64,
}

impl Changes {
    fn stripe(name: &(impl Hash + ?Sized)) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        (h.finish() % STRIPES as u64) as usize
    }

    /// Taken before a load of `name` reads the store.
    pub(super) fn ticket(&self, name: &(impl Hash + ?Sized)) -> Ticket {
        let stripe = Self::stripe(name);
        Ticket {
            stripe,
            count: self.0[stripe].load(Ordering::Acquire),
        }
    }

    /// Counts a change of `name`; call it after the change is in the store.
    pub(super) fn count(&self, name: &(impl Hash + ?Sized)) {
        self.0[Self::stripe(name)].fetch_add(1, Ordering::AcqRel);
    }

    /// Whether no change came in the stripe since `ticket` was taken (ask under the cache's write
    /// lock).
    pub(super) fn none_since(&self, ticket: Ticket) -> bool {
        self.0[ticket.stripe].load(Ordering::Acquire) == ticket.count
    }
}

impl<V: Clone> Expiring<V> {
    /// The value put under `name` less than `ttl` ago.
    pub(super) fn fresh(&self, name: &str, ttl: Duration) -> Option<V> {
        let map = self.entries.read().ok()?;
        let (v, at) = map.get(name)?;
        (at.elapsed() < ttl).then(|| v.clone())
    }

    /// What a load of `name` presents to [`Self::put`]: take it before reading the store.
    pub(super) fn ticket(&self, name: &str) -> Ticket {
        self.changes.ticket(name)
    }

    /// Puts `v` under `name`, from now, unless something was forgotten since `ticket` was taken
    /// (then `v` may be what that change replaced).
    pub(super) fn put(&self, name: String, v: V, ticket: Ticket) {
        if let Ok(mut map) = self.entries.write() {
            if self.changes.none_since(ticket) {
                map.insert(name, (v, Instant::now()));
            }
        }
    }

    /// Forgets `name`.
    pub(super) fn forget(&self, name: &str) {
        if let Ok(mut map) = self.entries.write() {
            self.changes.count(name);
            map.remove(name);
        }
    }

    /// Forgets every value `f` picks (counting a change of each name forgotten).
    pub(super) fn forget_where(&self, f: impl Fn(&V) -> bool) {
        if let Ok(mut map) = self.entries.write() {
            map.retain(|name, (v, _)| {
                let forget = f(v);
                if forget {
                    self.changes.count(name.as_str());
                }
                !forget
            });
        }
    }
}

pub(crate) struct LoadedKey {
    pub(crate) record: KeyRow,
    pub(crate) arn: String,
    /// Index `v - 1` holds version `v` (empty for a key in a custom key store).
    pub(super) materials: Vec<KeyMaterial>,
    /// The wrapped form each of `materials` was unwrapped from: a reload reuses a material whose
    /// wrapped bytes did not change, so it needs the root of trust only for new material (and keeps
    /// working while an HSM root is unavailable).
    pub(super) wrapped: Vec<Vec<u8>>,
    pub(super) loaded: Instant,
    /// Set by the one caller reloading an expired entry.
    pub(super) refreshing: AtomicBool,
    /// Set when this node changed the key: the entry must not serve again, but a reload may still
    /// reuse its unwrapped material.
    pub(super) stale: AtomicBool,
}

/// How long an expired cache entry may still serve while one caller reloads it.
const REFRESH_GRACE: Duration = Duration::from_secs(1);

pub(super) struct CachedPrincipal {
    pub(super) principal: crate::policy::Principal,
    pub(super) secret: Zeroizing<Vec<u8>>,
    /// What `secret` was unwrapped from (a reload with the same bytes does not ask the root).
    pub(super) wrapped: Vec<u8>,
    pub(super) loaded: Instant,
}

impl Kms {
    /// The key with its unwrapped material, from the cache when fresh.
    ///
    /// When an entry expires, one caller reloads it while the others keep using it for at most
    /// [`REFRESH_GRACE`] more, so a hot key does not send every in-flight request to the store at once.
    pub(super) async fn loaded(&self, id: &Uuid) -> Result<Arc<LoadedKey>> {
        let stale = match self.cache.keys.read() {
            Ok(map) => map.get(id).cloned(),
            Err(_) => None,
        };
        if let Some(k) = stale.as_ref().filter(|k| !k.stale.load(Ordering::Acquire)) {
            let age = k.loaded.elapsed();
            if age < self.config.cache_ttl {
                return Ok(k.clone());
            }
            if age < self.config.cache_ttl + REFRESH_GRACE
                && k.refreshing.swap(true, Ordering::AcqRel)
            {
                return Ok(k.clone());
            }
        }
        let fresh = self.load_key(id, stale.as_deref()).await;
        if let (Err(_), Some(k)) = (&fresh, &stale) {
            k.refreshing.store(false, Ordering::Release);
        }
        fresh
    }

    /// Loads a key's record and material; material whose wrapped bytes are those `previous` (the
    /// expired cache entry) was unwrapped from is reused, not unwrapped again.
    pub(super) async fn load_key(
        &self,
        id: &Uuid,
        previous: Option<&LoadedKey>,
    ) -> Result<Arc<LoadedKey>> {
        let ticket = self.cache.keys_changed.ticket(id);
        let record = self.record(id).await?;
        let rows = self.store.get_materials(id).await?;
        for (i, row) in rows.iter().enumerate() {
            if row.version as usize != i + 1 {
                return Err(KmsError::Internal(
                    "Key material versions are not contiguous.".into(),
                ));
            }
        }
        let known = |i: usize, wrapped: &[u8]| {
            let p = previous?;
            (p.wrapped.get(i)?.as_slice() == wrapped).then(|| p.materials.get(i).cloned())?
        };
        let mut materials: Vec<Option<KeyMaterial>> = rows
            .iter()
            .enumerate()
            .map(|(i, row)| known(i, &row.wrapped))
            .collect();
        let missing: Vec<(usize, u32, Vec<u8>)> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| materials[*i].is_none())
            .map(|(i, row)| (i, row.version, row.wrapped.clone()))
            .collect();
        if !missing.is_empty() {
            let key_id = *id;
            let unwrapped = off_runtime(&self.root, move |root| {
                missing
                    .iter()
                    .map(|(i, version, wrapped)| {
                        let raw = root.unwrap(&material_aad(&key_id, *version), wrapped)?;
                        Ok((*i, KeyMaterial::from_slice(&raw)?))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
            for (i, m) in unwrapped {
                materials[i] = Some(m);
            }
        }
        let materials = materials
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| KmsError::Internal("Key material went missing.".into()))?;
        let k = Arc::new(LoadedKey {
            arn: self.arn(id),
            record,
            materials,
            wrapped: rows.into_iter().map(|row| row.wrapped).collect(),
            loaded: Instant::now(),
            refreshing: AtomicBool::new(false),
            stale: AtomicBool::new(false),
        });
        if let Ok(mut map) = self.cache.keys.write() {
            if self.cache.keys_changed.none_since(ticket) {
                map.insert(*id, k.clone());
            }
        }
        Ok(k)
    }

    pub(super) fn invalidate(&self, id: &Uuid) {
        self.cache.keys_changed.count(id);
        if let Ok(map) = self.cache.keys.read() {
            if let Some(k) = map.get(id) {
                k.stale.store(true, Ordering::Release);
            }
        }
        self.cache.aliases.forget_where(|k| k == id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_refuses_the_loads_of_its_stripe_that_began_before_it() {
        let changes = Changes::default();
        let before = changes.ticket("alias/a");
        assert!(changes.none_since(before));
        // A name in another stripe, found by trying.
        let other = (0..)
            .map(|i| format!("alias/b{i}"))
            .find(|n| Changes::stripe(n.as_str()) != Changes::stripe("alias/a"))
            .unwrap();
        let elsewhere = changes.ticket(other.as_str());
        changes.count("alias/a");
        assert!(!changes.none_since(before));
        assert!(changes.none_since(elsewhere));
        assert!(changes.none_since(changes.ticket("alias/a")));
    }

    #[test]
    fn a_put_after_a_forget_of_its_name_is_dropped() {
        let cache: Expiring<u32> = Expiring::default();
        let ttl = Duration::from_secs(60);
        let ticket = cache.ticket("k");
        cache.forget("k");
        cache.put("k".into(), 1, ticket);
        assert_eq!(cache.fresh("k", ttl), None);
        cache.put("k".into(), 2, cache.ticket("k"));
        assert_eq!(cache.fresh("k", ttl), Some(2));
        let ticket = cache.ticket("k");
        cache.forget_where(|v| *v == 2);
        cache.put("k".into(), 3, ticket);
        assert_eq!(cache.fresh("k", ttl), None);
    }
}
