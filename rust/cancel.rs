//! Cooperative cancellation of long work (Ctrl-C during a whole-corpus pass, a stream's threads
//! told to stop): a shared flag that the long loops check at bounded intervals — every round of
//! documents, every MiB read, every block checksummed — returning [`Error::Interrupted`].
//!
//! The Python binding (`rust/py/mod.rs`) runs each long call on a helper thread, checks for signals
//! while it waits and cancels the call's flag on Ctrl-C; the work then stops within milliseconds
//! and the KeyboardInterrupt is raised.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag nobody has set yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask every holder of this flag to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Error::Interrupted)` once cancelled: `cancel.check()?` in a long loop.
    #[inline]
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }
}
