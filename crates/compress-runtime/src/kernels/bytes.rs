//! Weight bytes that are either owned or borrowed from a memory map kept alive by an owner.

use std::any::Any;
use std::ops::Deref;
use std::sync::Arc;

/// Read-only bytes: an owned buffer, or a slice of a memory-mapped file whose owner is held.
pub struct Bytes {
    ptr: *const u8,
    len: usize,
    _owner: Arc<dyn Any + Send + Sync>,
}

// SAFETY: `Bytes` only hands out shared `&[u8]` views of memory that is never mutated while
// the owner (held in `_owner`) is alive, so sharing across threads is sound.
unsafe impl Send for Bytes {}
// SAFETY: as above; all access is read-only.
unsafe impl Sync for Bytes {}

impl Bytes {
    /// Owns `v`.
    pub fn from_vec(v: Vec<u8>) -> Self {
        let owner: Arc<Vec<u8>> = Arc::new(v);
        let (ptr, len) = (owner.as_ptr(), owner.len());
        Self {
            ptr,
            len,
            _owner: owner,
        }
    }

    /// Borrows `slice`, which must point into memory owned by `owner` (for example a memory
    /// map inside it) that stays valid and unmodified for as long as `owner` is alive.
    ///
    /// # Safety
    /// `slice` must live inside `owner`'s memory and that memory must not move or change while
    /// any clone of `owner` exists.
    pub unsafe fn borrowed(owner: Arc<dyn Any + Send + Sync>, slice: &[u8]) -> Self {
        Self {
            ptr: slice.as_ptr(),
            len: slice.len(),
            _owner: owner,
        }
    }
}

impl Clone for Bytes {
    /// Another view of the same bytes (the owner is shared, nothing is copied).
    fn clone(&self) -> Self {
        Self {
            ptr: self.ptr,
            len: self.len,
            _owner: Arc::clone(&self._owner),
        }
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: ptr/len describe a live allocation kept alive by `_owner` (see constructors).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.len)
    }
}
