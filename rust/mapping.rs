//! A read-only memory map of a file that survives the file being truncated under it.
//!
//! Reading a mapped page that lies past the end of a file truncated after it was mapped raises
//! SIGBUS, which kills the process (a cache or an Arrow file truncated in place while a stream read
//! it did). No check before a read closes the window between check and read, so the fault itself
//! is handled: a process-wide SIGBUS handler looks the faulting address up among the live
//! [`MappedFile`]s; for one of theirs it maps a page of zeros over the missing page (the read then
//! completes) and marks the mapping truncated, which its reader checks after each read
//! ([`MappedFile::truncated`]) to raise a clear error instead of using the zeros. A fault anywhere
//! else is handed to the handler that was installed before (or to the default action, which ends
//! the process as before).
//!
//! The handler exists on Linux only; elsewhere a truncated mapping still raises SIGBUS.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

pub struct MappedFile {
    map: memmap2::Mmap,
    #[cfg(target_os = "linux")]
    slot: &'static fault::Slot,
}

impl MappedFile {
    /// Map `file` (opened read-only from `path`) whole.
    pub fn map(file: &File, path: &Path) -> Result<Self> {
        // SAFETY: read-only mapping. A file changed in place under it is the case this module
        // handles for truncation; distilx itself never writes a mapped file (builds write a new
        // file and rename it).
        let map = unsafe { memmap2::Mmap::map(file) }.map_err(|e| Error::io(path, e))?;
        #[cfg(target_os = "linux")]
        {
            let slot = fault::register(map.as_ptr() as usize, map.len()).ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "cannot map {}: {} memory-mapped files (caches, Arrow files) are open at once, the most one process may hold; close some streams",
                    path.display(),
                    fault::SLOTS))
            })?;
            Ok(MappedFile { map, slot })
        }
        #[cfg(not(target_os = "linux"))]
        Ok(MappedFile { map })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Hand the pages of `len` bytes from `start` back to the kernel, so that a file read once
    /// through keeps only what is being read resident.
    pub fn drop_pages(&self, start: usize, len: usize) {
        // SAFETY: a read-only file mapping: a dropped page is read from the file again if touched
        // (or faults and is handled, past the end of a truncated file).
        let _ = unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
    }

    /// Tell the kernel the file is read front to back (it reads ahead further).
    pub fn advise_sequential(&self) {
        let _ = self.map.advise(memmap2::Advice::Sequential);
    }

    /// Whether a read met a page past the file's end (the file was truncated after mapping); the
    /// bytes read from such pages are zeros, not the file's.
    pub fn truncated(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.slot.truncated();
        #[cfg(not(target_os = "linux"))]
        false
    }
}

#[cfg(target_os = "linux")]
impl Drop for MappedFile {
    fn drop(&mut self) {
        // Forget the range before `map` is unmapped (fields drop after this).
        self.slot.release();
    }
}

#[cfg(target_os = "linux")]
mod fault {
    use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

    /// Mappings protected at once.
    pub const SLOTS: usize = 256;

    /// One registered mapping: its address range (`len` 0: free) and whether it lost pages.
    pub struct Slot {
        taken: AtomicBool,
        start: AtomicUsize,
        len: AtomicUsize,
        truncated: AtomicBool,
    }

    impl Slot {
        const fn new() -> Self {
            Slot { taken: AtomicBool::new(false), start: AtomicUsize::new(0), len: AtomicUsize::new(0), truncated: AtomicBool::new(false) }
        }

        pub fn truncated(&self) -> bool {
            self.truncated.load(Ordering::Acquire)
        }

        pub fn release(&self) {
            self.len.store(0, Ordering::Release);
            self.truncated.store(false, Ordering::Relaxed);
            self.taken.store(false, Ordering::Release);
        }
    }

    static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
    static PAGE: AtomicUsize = AtomicUsize::new(0);

    /// The disposition SIGBUS had before ours, to hand other faults to. Written once, before
    /// `INSTALL` reads `INSTALLED`; read only after.
    struct Previous(std::cell::UnsafeCell<libc::sigaction>);
    // SAFETY: written once by the installing thread before INSTALLED is published, then only read.
    unsafe impl Sync for Previous {}
    static PREVIOUS: Previous = Previous(std::cell::UnsafeCell::new(unsafe { std::mem::zeroed() }));

    const NOT_INSTALLED: u8 = 0;
    const INSTALLING: u8 = 1;
    const INSTALLED: u8 = 2;
    static INSTALL: AtomicU8 = AtomicU8::new(NOT_INSTALLED);

    /// Protect `[start, start + len)`; None when every slot is taken. Installs the handler the first
    /// time (without a lock: a fork during the install cannot leave a waiter behind).
    pub fn register(start: usize, len: usize) -> Option<&'static Slot> {
        install();
        let slot = TABLE.iter().find(|s| s.taken.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok())?;
        slot.truncated.store(false, Ordering::Relaxed);
        slot.start.store(start, Ordering::Relaxed);
        // Published last: a handler that sees this length sees the start too.
        slot.len.store(len, Ordering::Release);
        Some(slot)
    }

    fn install() {
        if INSTALL.compare_exchange(NOT_INSTALLED, INSTALLING, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        // SAFETY: plain libc calls with valid pointers; PREVIOUS is written before INSTALLED is
        // published and never again.
        unsafe {
            PAGE.store(libc::sysconf(libc::_SC_PAGESIZE) as usize, Ordering::Relaxed);
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, PREVIOUS.0.get());
        }
        INSTALL.store(INSTALLED, Ordering::Release);
    }

    /// The SIGBUS handler: async-signal-safe (atomics, one `mmap`, the previous handler).
    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler.
        let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
        // Only a fault the kernel raised (si_code > 0) has an address; a SIGBUS sent with kill()
        // is not ours to handle.
        let slots = if code > 0 { &TABLE[..] } else { &[] };
        for slot in slots {
            let len = slot.len.load(Ordering::Acquire);
            let start = slot.start.load(Ordering::Relaxed);
            if len == 0 || addr < start || addr >= start + len {
                continue;
            }
            let page = PAGE.load(Ordering::Relaxed);
            let at = addr & !(page - 1);
            // SAFETY: replaces one page inside a mapping this module registered (and that is
            // still mapped: a slot is released before its mapping goes) with zeros, read-only.
            let zeros = unsafe {
                libc::mmap(at as *mut libc::c_void, page, libc::PROT_READ, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED, -1, 0)
            };
            if zeros != libc::MAP_FAILED {
                slot.truncated.store(true, Ordering::Release);
                return;
            }
        }
        // SAFETY: PREVIOUS was written before the handler was installed.
        unsafe { hand_on(sig, info, ctx, &*PREVIOUS.0.get()) }
    }

    /// Give a SIGBUS that is not ours to the disposition it had before.
    unsafe fn hand_on(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void, previous: &libc::sigaction) {
        let handler = previous.sa_sigaction;
        if handler == libc::SIG_IGN && (*info).si_code <= 0 {
            // A sent signal that was ignored before: still ignored.
        } else if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
            // The default action (a fault cannot be ignored): end the process as it would have
            // ended without this module.
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &default, std::ptr::null_mut());
            libc::raise(sig);
        } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = std::mem::transmute(handler);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
            f(sig);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::testutil::tmpdir;

    #[test]
    fn a_truncated_mapping_reads_zeros_and_says_so_instead_of_killing_the_process() {
        let dir = tmpdir("mapping-truncated");
        let path = dir.join("f.bin");
        let page = 4096 * 4;
        std::fs::write(&path, vec![7u8; page * 8]).unwrap();
        let file = File::open(&path).unwrap();
        let mapped = MappedFile::map(&file, &path).unwrap();
        assert!(mapped.bytes().iter().all(|&b| b == 7) && !mapped.truncated());
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(page as u64 * 2).unwrap();
        // The first pages are still the file's; the pages past its new end read as zeros (this
        // read died with SIGBUS before) and the mapping reports the truncation.
        assert_eq!(mapped.bytes()[page * 2 - 1], 7);
        assert!(!mapped.truncated());
        let tail: u64 = mapped.bytes()[page * 2..].iter().map(|&b| b as u64).sum();
        assert_eq!(tail, 0);
        assert!(mapped.truncated());
        // Another mapping is not affected, and a released slot is reused clean.
        drop(mapped);
        let again = MappedFile::map(&file, &path).unwrap();
        assert!(!again.truncated() && again.bytes().len() == page * 2);
    }
}
