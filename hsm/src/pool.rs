//! The module, the logged-in token and a bounded pool of sessions.
//!
//! A cryptoki `Session` is `Send` but not `Sync`: one thread uses it at a time, so each call borrows
//! one from the pool and gives it back. A session that saw an error is dropped (closed), never reused.
//! An error that means the device or the module is gone ([`HsmError::needs_reinit`]) finalizes the
//! module once every borrowed session is back, and the next call initialises it again (and logs in,
//! and finds its objects again: object handles do not survive a re-initialisation).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as Pkcs11Error, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::config::{HsmConfig, TokenSelector};
use crate::error::{classify, describe, HsmError, Op};

/// Pools using each module in this process. A module is initialised once per process, so a pool
/// that goes away (a custom key store disconnected) finalizes it only when no other pool (the root
/// of trust, another store on the same module) still uses it. A device failure still finalizes it
/// at once: that is how a token that came back is found again.
static MODULE_USERS: Mutex<Option<HashMap<PathBuf, usize>>> = Mutex::new(None);

fn module_users(module: &std::path::Path, delta: isize) -> usize {
    let mut guard = MODULE_USERS.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    let n = map.entry(module.to_path_buf()).or_insert(0);
    *n = n.saturating_add_signed(delta);
    *n
}

/// Called with the first session after each (re-)initialisation; returns what the calls need (the
/// root key's handle).
pub(crate) type Setup<T> = Box<dyn Fn(&Session) -> Result<T, HsmError> + Send + Sync>;

struct Live<T> {
    ctx: Pkcs11,
    /// False when another user in this process had initialised the module: then we do not finalize it.
    owns_init: bool,
    slot: Slot,
    data: T,
    /// Never lent: it keeps the login and the object handles alive. PKCS#11 logs the application
    /// out when its last session closes, and SoftHSMv2 then forgets every object handle.
    _anchor: Session,
}

struct State<T> {
    module: Option<Live<T>>,
    idle: Vec<Session>,
    /// Sessions borrowed or being opened.
    out: usize,
    /// Bumped at each finalization, so a session from before it is never put back.
    generation: u64,
    /// A device failure was seen: finalize as soon as `out` reaches zero; lend nothing until then.
    resetting: bool,
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
    state: Mutex<State<T>>,
    freed: Condvar,
}

impl<T: Clone + Send> Pool<T> {
    /// Initialises the module, logs in and runs `setup`: a wrong PIN or a missing token fails here.
    pub(crate) fn open(config: HsmConfig, pin: AuthPin, setup: Setup<T>) -> Result<Self, HsmError> {
        let pool = Self {
            config,
            pin,
            setup,
            state: Mutex::new(State {
                module: None,
                idle: Vec::new(),
                out: 0,
                generation: 0,
                resetting: false,
            }),
            freed: Condvar::new(),
        };
        {
            let mut st = pool.lock();
            pool.ensure_module(&mut st)?;
        }
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
                    let generation = lease.generation;
                    self.checkin(lease, false);
                    if e.needs_reinit() {
                        tracing::warn!(error = %e, "HSM failure; re-initialising the PKCS#11 module");
                        self.reset(generation);
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

    fn checkout(&self) -> Result<Lease<T>, HsmError> {
        let deadline = Instant::now() + self.config.session_wait;
        let mut st = self.lock();
        loop {
            if st.resetting && st.out == 0 {
                Self::finalize(&mut st, &self.config.module, true);
            }
            if !st.resetting {
                self.ensure_module(&mut st)?;
                let generation = st.generation;
                let Some(live) = st.module.as_ref() else {
                    return Err(HsmError::Config(
                        "the PKCS#11 module is not initialised".into(),
                    ));
                };
                let (data, ctx, slot) = (live.data.clone(), live.ctx.clone(), live.slot);
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
                    let opened = self.open_session(&ctx, slot);
                    return match opened {
                        Ok(session) => Ok(Lease {
                            session,
                            data,
                            generation,
                        }),
                        Err(e) => {
                            let mut st = self.lock();
                            st.out -= 1;
                            if e.needs_reinit() && st.generation == generation {
                                st.resetting = true;
                            }
                            drop(st);
                            self.freed.notify_all();
                            Err(e)
                        }
                    };
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HsmError::Busy);
            }
            st = self
                .freed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn checkin(&self, lease: Lease<T>, keep: bool) {
        let mut st = self.lock();
        st.out -= 1;
        if keep && !st.resetting && lease.generation == st.generation {
            st.idle.push(lease.session);
        } else {
            drop(lease.session); // closes it
        }
        if st.resetting && st.out == 0 {
            Self::finalize(&mut st, &self.config.module, true);
        }
        drop(st);
        self.freed.notify_all();
    }

    /// Marks the module of `generation` for re-initialisation.
    fn reset(&self, generation: u64) {
        let mut st = self.lock();
        if st.generation == generation && st.module.is_some() {
            st.resetting = true;
            if st.out == 0 {
                Self::finalize(&mut st, &self.config.module, true);
            }
        }
        drop(st);
        self.freed.notify_all();
    }

    /// Closes every idle session and finalizes the module (nothing is borrowed when this runs):
    /// after a device failure (`forced`), or when this was the module's last user in the process.
    fn finalize(st: &mut State<T>, module: &std::path::Path, forced: bool) {
        st.idle.clear();
        if let Some(live) = st.module.take() {
            let Live {
                ctx,
                owns_init,
                _anchor: anchor,
                ..
            } = live;
            drop(anchor); // closed before C_Finalize
            let others = module_users(module, -1);
            if (forced && owns_init) || others == 0 {
                if let Err(e) = ctx.finalize() {
                    tracing::debug!(error = %e, "C_Finalize failed");
                }
            }
        }
        st.generation += 1;
        st.resetting = false;
    }

    /// Initialises the module when it is not: logs in with an anchor session and runs `setup` on it.
    fn ensure_module(&self, st: &mut State<T>) -> Result<(), HsmError> {
        if st.module.is_some() {
            return Ok(());
        }
        let module_err = |reason: String| HsmError::Module {
            module: self.config.module.display().to_string(),
            reason,
        };
        let ctx = Pkcs11::new(&self.config.module).map_err(|e| module_err(describe(&e)))?;
        let owns_init = match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) => true,
            Err(Pkcs11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => false,
            Err(e) => return Err(module_err(describe(&e))),
        };
        let started = (|| {
            let slot = self.find_slot(&ctx)?;
            let anchor = self.open_session(&ctx, slot)?;
            let data = (self.setup)(&anchor)?;
            Ok::<_, HsmError>((slot, anchor, data))
        })();
        match started {
            Ok((slot, anchor, data)) => {
                module_users(&self.config.module, 1);
                st.module = Some(Live {
                    ctx,
                    owns_init,
                    slot,
                    data,
                    _anchor: anchor,
                });
                Ok(())
            }
            Err(e) => {
                if owns_init {
                    let _ = ctx.finalize();
                }
                Err(e)
            }
        }
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
        // Login state belongs to the application, not the session: the second session is already in.
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(classify(e, Op::Login, caps)),
        }
    }

    /// Sessions open now for calls (idle and borrowed, not counting the anchor), and how many
    /// re-initialisations happened: for tests and metrics.
    pub(crate) fn stats(&self) -> (usize, u64) {
        let st = self.lock();
        (st.idle.len() + st.out, st.generation)
    }
}

impl<T: Clone + Send> Drop for Pool<T> {
    fn drop(&mut self) {
        let module = self.config.module.clone();
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        Self::finalize(st, &module, false);
    }
}
