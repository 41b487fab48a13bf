//! A value built on first use without any lock, so that a process forked at any moment can use it.
//!
//! `std::sync::OnceLock` (and `Once`, `Mutex`) make later callers wait while one thread builds the
//! value. If the process forks during that build, the builder thread does not exist in the child,
//! the cell stays "being built" forever and every child thread that needs it waits forever (a
//! DataLoader-style fork in the middle of an epoch hung this way on text from new Unicode blocks).
//! Here nobody waits: a caller that finds the cell empty builds the value itself and publishes it
//! with one compare-and-swap; when two threads race, the loser drops its copy and uses the winner's.
//! The values built here are pure functions of their inputs, so either copy is the same.

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

pub struct LazyBox<T> {
    ptr: AtomicPtr<T>,
}

impl<T> LazyBox<T> {
    pub const fn new() -> Self {
        LazyBox { ptr: AtomicPtr::new(ptr::null_mut()) }
    }

    /// The value, built by `build` if no thread has published one yet.
    #[inline]
    pub fn get_or_init(&self, build: impl FnOnce() -> T) -> &T {
        let current = self.ptr.load(Ordering::Acquire);
        if !current.is_null() {
            // SAFETY: a published pointer came from `Box::into_raw` below and is freed only by
            // `drop`, which needs `&mut self`: it outlives this borrow of `self`.
            return unsafe { &*current };
        }
        self.publish(Box::new(build()))
    }

    #[cold]
    fn publish(&self, value: Box<T>) -> &T {
        let fresh = Box::into_raw(value);
        match self.ptr.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: as in `get_or_init`; `fresh` is now the published pointer.
            Ok(_) => unsafe { &*fresh },
            Err(winner) => {
                // SAFETY: `fresh` was never shared; `winner` is the published pointer.
                drop(unsafe { Box::from_raw(fresh) });
                unsafe { &*winner }
            }
        }
    }
}

impl<T> Default for LazyBox<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for LazyBox<T> {
    fn drop(&mut self) {
        let p = *self.ptr.get_mut();
        if !p.is_null() {
            // SAFETY: the published pointer came from `Box::into_raw` and nothing else frees it.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

// SAFETY: the cell owns a `T` reached from any thread through `&self` (shared) and dropped by its
// owner: the same requirements as `OnceLock<T>`.
unsafe impl<T: Send + Sync> Sync for LazyBox<T> {}
unsafe impl<T: Send> Send for LazyBox<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn racing_threads_all_see_one_published_value() {
        let cell = LazyBox::new();
        let builds = AtomicUsize::new(0);
        let seen: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let v: &Vec<u8> = cell.get_or_init(|| {
                            builds.fetch_add(1, Ordering::Relaxed);
                            vec![7; 1000]
                        });
                        v.as_ptr() as usize
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "every thread gets the published copy");
        assert!(builds.load(Ordering::Relaxed) >= 1);
        assert_eq!(cell.get_or_init(|| unreachable!()), &vec![7; 1000]);
    }
}
