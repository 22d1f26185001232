//! The broker's global allocator: the system allocator, except that requests of
//! 1 GiB or more are served as fresh anonymous mappings with `MAP_NORESERVE`.
//!
//! Why: the wire decoder (kafka-protocol) sizes a `Vec` from the element count a
//! client sends before reading any element. A request claiming two billion
//! elements asks for hundreds of gigabytes; the system allocator refuses, and a
//! refused allocation aborts the process — one bad packet would take the broker
//! down. No genuine request needs such an allocation (frames are capped at
//! `socket.request.max.bytes`), so serving it as a reservation of address space
//! that is never touched costs nothing: the decoder fails on the first missing
//! element and the mapping is unmapped. Pages that are written are committed as
//! usual. With `vm.overcommit_memory = 2` the kernel refuses such mappings too;
//! the connection-level frame limit is then the only guard.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large bypass the system allocator.
pub const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct BrokerAlloc;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

// SAFETY: every pointer handed out comes either from `System` (and goes back
// to it) or from `mmap` of exactly `layout.size()` bytes (and goes back to
// `munmap` with that size); which one is decided by the layout alone, which
// callers must pass unchanged to `dealloc`.
unsafe impl GlobalAlloc for BrokerAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: an anonymous private mapping with no address hint has no
            // preconditions; failure is reported as MAP_FAILED.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    layout.size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                std::ptr::null_mut()
            } else {
                p.cast()
            }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Fresh anonymous mappings are zero-filled.
            // SAFETY: as in `alloc`.
            unsafe { self.alloc(layout) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from our mmap of `layout.size()` bytes.
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = match Layout::from_size_align(new_size, layout.align()) {
            Ok(l) => l,
            Err(_) => return std::ptr::null_mut(),
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: both sides belong to `System`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Crossing the threshold: move between the two sources.
        // SAFETY: `new_layout` is valid; the copy stays within both blocks;
        // the old block is released with its own layout.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_blocks_are_reserved_not_committed_and_round_trip() {
        let a = BrokerAlloc;
        // 64 GiB: more than this machine has, as a lying element count asks.
        let layout = Layout::from_size_align(64 << 30, 8).unwrap();
        // SAFETY: the layout is non-zero; the block is released with it.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null(), "a reservation should succeed");
            *p = 7;
            *p.add(layout.size() - 1) = 9;
            assert_eq!(*p, 7);
            a.dealloc(p, layout);
        }
    }

    #[test]
    fn realloc_across_the_threshold_keeps_the_contents() {
        let a = BrokerAlloc;
        let small = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: each block is used within its size and released with its layout.
        unsafe {
            let p = a.alloc(small);
            std::ptr::copy_nonoverlapping(b"0123456789abcdef".as_ptr(), p, 16);
            let big = a.realloc(p, small, HUGE);
            assert_eq!(std::slice::from_raw_parts(big, 16), b"0123456789abcdef");
            let back = a.realloc(big, Layout::from_size_align(HUGE, 8).unwrap(), 32);
            assert_eq!(std::slice::from_raw_parts(back, 16), b"0123456789abcdef");
            a.dealloc(back, Layout::from_size_align(32, 8).unwrap());
        }
    }
}
