//! A fine-tune's checkpoints in one process: the local models with a `step`
//! (a spec's `checkpoints` list expands into them, see
//! `moralsweep_common::checkpoints`) share one slot per family, which holds
//! one checkpoint's weights at a time. A request for another checkpoint
//! waits until the loaded one has no request computing or waiting, then the
//! loaded weights are dropped and the next checkpoint's are loaded; the
//! tokenizer is built once per vocabulary and shared
//! (`moralsweep_local::tokenizer::SharedTokenizers`).
//!
//! The loaded checkpoint keeps its turn while requests for it keep coming,
//! so a worker whose leases mix two checkpoints switches when one of them
//! runs dry, not at every request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use moralsweep_local::tokenizer::SharedTokenizers;
use moralsweep_local::{Engine, EngineOptions, LocalError};

/// One family's slot.
pub(super) struct Slot {
    family: String,
    state: Mutex<State>,
    changed: tokio::sync::Notify,
    tokenizers: SharedTokenizers,
}

#[derive(Default)]
struct State {
    loaded: Option<(PathBuf, Arc<Engine>)>,
    /// Requests computing on the loaded engine.
    in_use: usize,
    /// Requests waiting, per checkpoint file.
    waiting: HashMap<PathBuf, usize>,
    /// A checkpoint is being loaded (nothing is held meanwhile).
    loading: bool,
    loads: u64,
}

/// What a slot has done, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotReport {
    /// Checkpoints loaded so far (a switch back counts again).
    pub loads: u64,
    /// Tokenizers built (one per vocabulary).
    pub tokenizers: usize,
}

/// The slot of `family` in this process.
pub(super) fn slot(family: &str) -> Arc<Slot> {
    slots()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(family.to_string())
        .or_insert_with(|| {
            Arc::new(Slot {
                family: family.to_string(),
                state: Mutex::default(),
                changed: tokio::sync::Notify::new(),
                tokenizers: SharedTokenizers::default(),
            })
        })
        .clone()
}

fn slots() -> &'static Mutex<HashMap<String, Arc<Slot>>> {
    static S: OnceLock<Mutex<HashMap<String, Arc<Slot>>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// The loads and tokenizers of `family`'s slot in this process, if it has one.
pub fn report(family: &str) -> Option<SlotReport> {
    let s = slots()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(family)
        .cloned()?;
    let loads = s.lock().loads;
    Some(SlotReport {
        loads,
        tokenizers: s.tokenizers.built(),
    })
}

/// The right to compute on a checkpoint's engine; the slot keeps that
/// checkpoint loaded while any is held.
pub(super) struct Held {
    slot: Arc<Slot>,
    /// Always `Some` until dropped.
    engine: Option<Arc<Engine>>,
}

impl Held {
    pub(super) fn engine(&self) -> &Arc<Engine> {
        self.engine.as_ref().expect("held until dropped")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // This handle on the engine goes first: once `in_use` reaches 0 the
        // slot's own may be dropped at once, and with it the weights.
        self.engine = None;
        let mut st = self.slot.lock();
        st.in_use -= 1;
        if st.in_use == 0 {
            drop(st);
            self.slot.changed.notify_waiters();
        }
    }
}

/// Counts a request as waiting for a checkpoint while it exists.
struct Waiting<'a> {
    slot: &'a Slot,
    path: &'a Path,
    /// Woken as usual (else the request was dropped while it waited).
    woken: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut st = self.slot.lock();
        if let Some(n) = st.waiting.get_mut(self.path) {
            *n -= 1;
            if *n == 0 {
                st.waiting.remove(self.path);
            }
        }
        drop(st);
        // A request that gives up waiting may be what kept a switch from
        // happening; the others look again. (A woken one looks itself.)
        if !self.woken {
            self.slot.changed.notify_waiters();
        }
    }
}

/// Clears `loading` however a load ends (an error, a cancelled request).
struct Loading<'a>(&'a Slot);

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        self.0.lock().loading = false;
        self.0.changed.notify_waiters();
    }
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine of the checkpoint at `path`, loading it (after the loaded
    /// one's requests are done) if another is loaded. `key` names the model
    /// in logs and errors.
    pub(super) async fn hold(
        self: &Arc<Self>,
        path: &Path,
        opts: &EngineOptions,
        key: &str,
    ) -> Result<Held, LocalError> {
        loop {
            // Registered before the state is read, so no wake-up is missed.
            let changed = self.changed.notified();
            // What to do, decided under the lock (released before any await).
            let switch = {
                let mut st = self.lock();
                let mut switch = None;
                if !st.loading {
                    if let Some((p, e)) = &st.loaded {
                        if p == path {
                            let engine = e.clone();
                            st.in_use += 1;
                            return Ok(Held {
                                slot: self.clone(),
                                engine: Some(engine),
                            });
                        }
                    }
                    let loaded_wanted = st
                        .loaded
                        .as_ref()
                        .is_some_and(|(p, _)| st.waiting.contains_key(p));
                    if st.in_use == 0 && !loaded_wanted {
                        st.loading = true;
                        switch = Some(st.loaded.take());
                    }
                }
                if switch.is_none() {
                    *st.waiting.entry(path.to_path_buf()).or_default() += 1;
                }
                switch
            };
            if let Some(old) = switch {
                // No request holds it (in_use is 0): its weights go now,
                // before the next checkpoint's are read.
                drop(old);
                return self.load(path, opts, key).await;
            }
            let mut waiting = Waiting {
                slot: self,
                path,
                woken: false,
            };
            changed.await;
            waiting.woken = true;
        }
    }

    async fn load(
        self: &Arc<Self>,
        path: &Path,
        opts: &EngineOptions,
        key: &str,
    ) -> Result<Held, LocalError> {
        let _loading = Loading(self);
        let (slot, p, o) = (self.clone(), path.to_path_buf(), opts.clone());
        let t = std::time::Instant::now();
        let engine =
            tokio::task::spawn_blocking(move || Engine::load_shared(&p, o, &slot.tokenizers))
                .await
                .map_err(|e| {
                    LocalError::Input(format!("loading {} failed: {e}", path.display()))
                })??;
        let engine = Arc::new(engine);
        let mut st = self.lock();
        st.loaded = Some((path.to_path_buf(), engine.clone()));
        st.loads += 1;
        // The loading request holds it before anyone else looks, so another
        // checkpoint's waiter cannot switch it away unused.
        st.in_use += 1;
        st.loading = false;
        tracing::info!(
            model = %key,
            family = %self.family,
            path = %path.display(),
            secs = t.elapsed().as_secs_f64(),
            loads = st.loads,
            tokenizers_built = self.tokenizers.built(),
            models_in_memory = moralsweep_local::model::live_models(),
            "local checkpoint loaded"
        );
        Ok(Held {
            slot: self.clone(),
            engine: Some(engine),
        })
    }
}
