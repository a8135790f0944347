//! Interruption: SIGTERM (what Slurm and Kubernetes send before preemption), SIGINT and SIGHUP (a closed
//! terminal or ssh session, handled as SIGTERM) set a flag, and long loops ask `check()` at their safe points
//! (a training step boundary, an evaluation or encoding batch). A run that stops this way checkpoints and
//! exits with `EXIT_CODE` (75, EX_TEMPFAIL: "interrupted, resumable"). A second Ctrl-C ends the process at
//! once. Until a run has state to save (it calls `defer()` when training starts), a signal ends the process
//! at once with exit 75 and one line: reading data, building the model or tokenising has no safe point to
//! wait for, and nothing to lose.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;

use anyhow::Result;

/// The exit code of an interrupted, resumable run.
pub const EXIT_CODE: u8 = 75;

/// The error a long loop returns when asked to stop; `main` maps it to exit code 75.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted by a signal")
    }
}

impl std::error::Error for Interrupted {}

fn flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Whether a signal waits for the next safe point (true while state worth saving exists) or ends at once.
fn deferring() -> &'static AtomicBool {
    static DEFER: AtomicBool = AtomicBool::new(false);
    &DEFER
}

/// While the returned guard lives, a signal only sets the flag (the caller checkpoints at its next safe
/// point); before and after, a signal ends the process at once.
#[must_use]
pub struct Deferred(bool);

pub fn defer() -> Deferred {
    Deferred(deferring().swap(true, Ordering::SeqCst))
}

impl Drop for Deferred {
    fn drop(&mut self) {
        deferring().store(self.0, Ordering::SeqCst);
    }
}

/// Installs the handlers (once; later calls do nothing); until this is called, `check` never fires.
pub fn install() -> Result<()> {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // registered first, so it sees the flag as it was: a second SIGINT while the flag is set exits at once
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(flag()))?;
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(sig, Arc::clone(flag()))?;
    }
    // outside a deferring phase nobody will ask `check()` in time: this thread ends the process instead
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            if !deferring().load(Ordering::SeqCst) {
                let name = signal_hook::low_level::signal_name(sig).unwrap_or("a signal");
                crate::say!("stopped: {name} before there was anything to save; run the same command again");
                // `_exit`: no destructors or atexit handlers race the main thread inside libtorch
                signal_hook::low_level::exit(EXIT_CODE as i32);
            }
        }
    })?;
    let _ = DONE.set(());
    Ok(())
}

pub fn requested() -> bool {
    flag().load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once a signal has arrived.
pub fn check() -> Result<()> {
    if requested() {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// Whether an error (anywhere in its chain) is an interruption.
pub fn is_interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Interrupted>())
}

/// Sets the flag as a signal would (tests).
pub fn request() {
    flag().store(true, Ordering::SeqCst);
}

/// Clears the flag (tests that interrupt in-process and go on).
pub fn reset() {
    flag().store(false, Ordering::SeqCst);
}
