//! Interruption: SIGTERM (what Slurm and Kubernetes send before preemption) and SIGINT set a flag, and
//! long loops ask `check()` at their safe points (a training step boundary, an evaluation or encoding
//! batch). A run that stops this way checkpoints and exits with `EXIT_CODE` (75, EX_TEMPFAIL:
//! "interrupted, resumable"). A second Ctrl-C ends the process at once.

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

/// Installs the handlers; until this is called, `check` never fires.
pub fn install() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // registered first, so it sees the flag as it was: a second SIGINT while the flag is set exits at once
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(flag()))?;
    signal_hook::flag::register(SIGINT, Arc::clone(flag()))?;
    signal_hook::flag::register(SIGTERM, Arc::clone(flag()))?;
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
