//! The module, the logged-in token and a bounded pool of sessions.
//!
//! A cryptoki `Session` is `Send` but not `Sync`: one thread uses it at a time, so each call borrows
//! one from the pool and gives it back. A session that saw an error is dropped (closed), never reused.
//! An error that means the device or the module is gone ([`HsmError::needs_reinit`]) finalizes the
//! module once every call in progress, in every pool on that module, has ended ([`Module`]); the next
//! call of each pool initialises it again (and logs in, and finds its objects again: object handles
//! do not survive a re-initialisation).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as Pkcs11Error, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::config::{HsmConfig, TokenSelector};
use crate::error::{classify, describe, HsmError, Op};

/// One PKCS#11 module as this process uses it, shared by every pool on it (the root of trust, each
/// custom key store): a module is initialised once per process, so re-initialising it is a matter
/// for all of its pools together.
///
/// A device failure seen by any pool marks the module `resetting`: no pool starts a call on it
/// until every call in progress, in every pool, has ended; then the module is finalized and its
/// generation bumped. Each pool notices the new generation on its next call and sets itself up
/// again (slot, login, its objects). Sessions of an older generation are forgotten, never closed:
/// after `C_Finalize` their handles mean nothing, or, once the module is initialised again, may
/// name another pool's new session.
struct Module {
    path: PathBuf,
    state: Mutex<ModuleState>,
    changed: Condvar,
    /// By slot: the SHA-256 of the PIN of the last `C_Login` that succeeded there. The login state
    /// is the application's, so a later `C_Login` answers "already logged in" whatever its PIN;
    /// that answer is taken only for the same PIN. The lock also makes each login and its record
    /// one step. Finalizing the module logs every slot out, and clears this.
    logins: Mutex<HashMap<u64, Zeroizing<[u8; 32]>>>,
}

struct ModuleState {
    /// The context that initialised the module; `None` while it is not initialised.
    ctx: Option<Pkcs11>,
    /// Bumped each time the module is finalized.
    generation: u64,
    /// Calls in progress on the module, over every pool.
    in_flight: usize,
    /// A device failure was seen: finalize once `in_flight` is zero; start no call until then.
    resetting: bool,
    /// Pools using the module; the last one to go finalizes it.
    users: usize,
}

/// Every module this process uses, by path.
static MODULES: Mutex<Option<HashMap<PathBuf, Arc<Module>>>> = Mutex::new(None);

impl Module {
    /// The registry entry for `path`, with one more user.
    fn join(path: &std::path::Path) -> Arc<Self> {
        let mut all = MODULES.lock().unwrap_or_else(|p| p.into_inner());
        let module = all
            .get_or_insert_with(HashMap::new)
            .entry(path.to_path_buf())
            .or_insert_with(|| {
                Arc::new(Module {
                    path: path.to_path_buf(),
                    state: Mutex::new(ModuleState {
                        ctx: None,
                        generation: 0,
                        in_flight: 0,
                        resetting: false,
                        users: 0,
                    }),
                    changed: Condvar::new(),
                    logins: Mutex::new(HashMap::new()),
                })
            })
            .clone();
        module.lock().users += 1;
        module
    }

    fn lock(&self) -> MutexGuard<'_, ModuleState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a call: waits while the module is being reset (until `deadline`), initialises it when
    /// it is not, and returns its context and generation. Every `enter` that succeeds is followed
    /// by one [`Module::leave`].
    fn enter(&self, deadline: Instant) -> Result<(Pkcs11, u64), HsmError> {
        let mut st = self.lock();
        while st.resetting {
            st = wait_until(&self.changed, st, deadline)?;
        }
        let ctx = match &st.ctx {
            Some(ctx) => ctx.clone(),
            None => {
                let module_err = |reason: String| HsmError::Module {
                    module: self.path.display().to_string(),
                    reason,
                };
                let ctx = Pkcs11::new(&self.path).map_err(|e| module_err(describe(&e)))?;
                match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
                    // Already initialised by code outside this registry: use it as it is.
                    Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
                    Err(e) => return Err(module_err(describe(&e))),
                }
                st.ctx = Some(ctx.clone());
                ctx
            }
        };
        st.in_flight += 1;
        Ok((ctx, st.generation))
    }

    /// Ends a call; the last call out of a module being reset finalizes it.
    fn leave(&self) {
        let mut st = self.lock();
        st.in_flight -= 1;
        if st.resetting && st.in_flight == 0 {
            self.finalize(&mut st);
            drop(st);
            // Only `enter` waits, and only for a reset to end.
            self.changed.notify_all();
        }
    }

    /// A call of `generation` met a device failure: reset the module (once per generation).
    fn fail(&self, generation: u64) {
        let mut st = self.lock();
        if st.generation == generation && st.ctx.is_some() {
            st.resetting = true;
        }
    }

    /// One user fewer; the last one finalizes the module.
    fn quit(&self) {
        let mut st = self.lock();
        st.users -= 1;
        if st.users == 0 && st.in_flight == 0 {
            self.finalize(&mut st);
            drop(st);
            self.changed.notify_all();
        }
    }

    fn finalize(&self, st: &mut ModuleState) {
        self.logins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        if let Some(ctx) = st.ctx.take() {
            if let Err(e) = ctx.finalize() {
                tracing::debug!(error = %e, "C_Finalize failed");
            }
        }
        st.generation += 1;
        st.resetting = false;
    }
}

/// Called with the first session after each (re-)initialisation; returns what the calls need (the
/// root key's handle).
pub(crate) type Setup<T> = Box<dyn Fn(&Session) -> Result<T, HsmError> + Send + Sync>;

struct Live<T> {
    slot: Slot,
    data: T,
    /// The module generation this was set up in.
    generation: u64,
    /// Never lent: it keeps the login and the object handles alive. PKCS#11 logs the application
    /// out when its last session closes, and SoftHSMv2 then forgets every object handle.
    anchor: Session,
}

struct State<T> {
    live: Option<Live<T>>,
    idle: Vec<Session>,
    /// Sessions borrowed or being opened.
    out: usize,
}

/// A session lent to one call.
pub(crate) struct Lease<T> {
    session: Session,
    data: T,
    generation: u64,
}

pub(crate) struct Pool<T: Clone + Send> {
    config: HsmConfig,
    pin: AuthPin,
    setup: Setup<T>,
    module: Arc<Module>,
    /// The module's generation when this pool joined it (it is not finalized for want of users
    /// while the pool lives, so every later generation is a reset).
    joined_at: u64,
    state: Mutex<State<T>>,
    freed: Condvar,
}

impl<T: Clone + Send> Pool<T> {
    /// Initialises the module (unless another pool has), logs in and runs `setup`: a wrong PIN or
    /// a missing token fails here.
    pub(crate) fn open(config: HsmConfig, pin: AuthPin, setup: Setup<T>) -> Result<Self, HsmError> {
        let module = Module::join(&config.module);
        let joined_at = module.lock().generation;
        let pool = Self {
            config,
            pin,
            setup,
            module,
            joined_at,
            state: Mutex::new(State {
                live: None,
                idle: Vec::new(),
                out: 0,
            }),
            freed: Condvar::new(),
        };
        let lease = pool.checkout()?;
        pool.checkin(lease, true);
        Ok(pool)
    }

    pub(crate) fn config(&self) -> &HsmConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves plain bookkeeping behind, still consistent enough.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with a session. A device failure re-initialises the module and tries once more.
    pub(crate) fn run<R>(
        &self,
        f: impl Fn(&Session, &T) -> Result<R, HsmError>,
    ) -> Result<R, HsmError> {
        let mut retried = false;
        loop {
            let lease = self.checkout()?;
            match f(&lease.session, &lease.data) {
                Ok(r) => {
                    self.checkin(lease, true);
                    return Ok(r);
                }
                Err(e) => {
                    if e.needs_reinit() {
                        self.module.fail(lease.generation);
                    }
                    self.checkin(lease, false);
                    if e.needs_reinit() {
                        tracing::warn!(error = %e, "HSM failure; re-initialising the PKCS#11 module");
                        if !retried {
                            retried = true;
                            continue;
                        }
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Enters the module and lends a session of its current generation.
    fn checkout(&self) -> Result<Lease<T>, HsmError> {
        let deadline = Instant::now() + self.config.session_wait;
        let (ctx, generation) = self.module.enter(deadline)?;
        self.lend(&ctx, generation, deadline).inspect_err(|e| {
            // The module's view of its tokens may be stale (SoftHSMv2 reads them when it is
            // initialised): a token that is missing or failing resets it.
            if e.needs_reinit() || matches!(e, HsmError::TokenNotFound(_)) {
                self.module.fail(generation);
            }
            self.module.leave();
        })
    }

    fn lend(&self, ctx: &Pkcs11, generation: u64, deadline: Instant) -> Result<Lease<T>, HsmError> {
        let mut st = self.lock();
        loop {
            if st.live.as_ref().is_some_and(|l| l.generation != generation) {
                // The module was finalized since this pool set up: what it held is gone.
                Self::forget(&mut st);
            }
            let (data, slot) = match &st.live {
                Some(live) => (live.data.clone(), live.slot),
                None => {
                    let live = self.set_up(ctx, generation)?;
                    let got = (live.data.clone(), live.slot);
                    st.live = Some(live);
                    got
                }
            };
            if let Some(session) = st.idle.pop() {
                st.out += 1;
                return Ok(Lease {
                    session,
                    data,
                    generation,
                });
            }
            if st.out < self.config.max_sessions {
                st.out += 1;
                drop(st);
                return match self.open_session(ctx, slot) {
                    Ok(session) => Ok(Lease {
                        session,
                        data,
                        generation,
                    }),
                    Err(e) => {
                        self.lock().out -= 1;
                        self.freed.notify_all();
                        Err(e)
                    }
                };
            }
            st = wait_until(&self.freed, st, deadline)?;
        }
    }

    /// Gives a session back (closing it unless `keep`) and leaves the module.
    fn checkin(&self, lease: Lease<T>, keep: bool) {
        let mut st = self.lock();
        st.out -= 1;
        let current = st
            .live
            .as_ref()
            .is_some_and(|l| l.generation == lease.generation);
        if keep && current {
            st.idle.push(lease.session);
        } else if current {
            drop(lease.session); // closes it; the module cannot be finalized while we are in it
        } else {
            std::mem::forget(lease.session);
        }
        drop(st);
        self.freed.notify_all();
        self.module.leave();
    }

    /// Drops, without closing them, the sessions of a generation the module no longer has.
    fn forget(st: &mut State<T>) {
        for session in st.idle.drain(..) {
            std::mem::forget(session);
        }
        if let Some(Live { anchor, .. }) = st.live.take() {
            std::mem::forget(anchor);
        }
    }

    /// Finds the token, logs in with an anchor session and runs `setup` on it.
    fn set_up(&self, ctx: &Pkcs11, generation: u64) -> Result<Live<T>, HsmError> {
        let slot = self.find_slot(ctx)?;
        let anchor = self.open_session(ctx, slot)?;
        let data = (self.setup)(&anchor)?;
        Ok(Live {
            slot,
            data,
            generation,
            anchor,
        })
    }

    fn find_slot(&self, ctx: &Pkcs11) -> Result<Slot, HsmError> {
        let caps = &self.config.capabilities;
        let slots = ctx
            .get_slots_with_token()
            .map_err(|e| classify(e, Op::Other, caps))?;
        for slot in slots {
            let matches = match &self.config.token {
                TokenSelector::Slot(id) => slot.id() == *id,
                TokenSelector::Label(label) => {
                    let info = ctx
                        .get_token_info(slot)
                        .map_err(|e| classify(e, Op::Other, caps))?;
                    info.label().trim_end() == label.as_str()
                }
            };
            if matches {
                return Ok(slot);
            }
        }
        Err(HsmError::TokenNotFound(self.config.token.to_string()))
    }

    fn open_session(&self, ctx: &Pkcs11, slot: Slot) -> Result<Session, HsmError> {
        let caps = &self.config.capabilities;
        let session = ctx
            .open_rw_session(slot)
            .map_err(|e| classify(e, Op::Other, caps))?;
        // Login state belongs to the application, not the session: a second session (of this pool
        // or of another on the same token) is already in, if its PIN is the one that logged in.
        let pin = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            self.pin.expose_secret().as_bytes(),
        );
        let mut logins = self.module.logins.lock().unwrap_or_else(|p| p.into_inner());
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) => {
                let mut record = Zeroizing::new([0u8; 32]);
                record.copy_from_slice(pin.as_ref());
                logins.insert(slot.id(), record);
                Ok(session)
            }
            Err(Pkcs11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                match logins.get(&slot.id()) {
                    Some(record)
                        if aws_lc_rs::constant_time::verify_slices_are_equal(
                            &record[..],
                            pin.as_ref(),
                        )
                        .is_err() =>
                    {
                        Err(HsmError::Login("CKR_PIN_INCORRECT"))
                    }
                    // The same PIN, or a login made outside this registry (as a module initialised
                    // by other code): in, as before.
                    _ => Ok(session),
                }
            }
            Err(e) => Err(classify(e, Op::Login, caps)),
        }
    }

    /// Sessions open now for calls (idle and borrowed, not counting the anchor), and how many
    /// times the module was reset since this pool joined it: for tests and metrics.
    pub(crate) fn stats(&self) -> (usize, u64) {
        let open = {
            let st = self.lock();
            st.idle.len() + st.out
        };
        (open, self.module.lock().generation - self.joined_at)
    }
}

impl<T: Clone + Send> Drop for Pool<T> {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        {
            // Close this pool's sessions while their generation is the module's, under the module's
            // lock so that no other pool finalizes it meanwhile; otherwise forget them.
            let module = self.module.lock();
            let current = module.ctx.is_some()
                && st.live.as_ref().map(|l| l.generation) == Some(module.generation);
            if current {
                st.idle.clear();
                st.live = None;
            } else {
                Self::forget(st);
            }
        }
        self.module.quit();
    }
}

/// Waits on `cv` until it is notified or `deadline` passes: [`HsmError::Busy`] once it has passed.
fn wait_until<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Instant,
) -> Result<MutexGuard<'a, T>, HsmError> {
    let now = Instant::now();
    if now >= deadline {
        return Err(HsmError::Busy);
    }
    Ok(cv
        .wait_timeout(guard, deadline - now)
        .unwrap_or_else(|p| p.into_inner())
        .0)
}
