//! Raw gemm calls of the CPU kernels: an output pointer the parallel units of one call share,
//! and one strided product, on the calling thread (the kernels parallelise over their own units)
//! or on all of the pool's threads.

/// The output pointer, shared by the units of one call; each unit writes only its own block.
#[derive(Clone, Copy)]
pub(crate) struct Out(pub(crate) *mut f32);
// SAFETY: the blocks the units write through it are disjoint (each kernel says how).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The pointer (a method, so that closures capture the whole `Out`, which is `Sync`).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Where one product runs.
#[derive(Clone, Copy)]
pub(crate) enum Threads {
    /// The calling thread.
    One,
    /// Every thread of the current rayon pool.
    All,
}

/// `dst = lhs rhs` for `[m, n, k]`: an `m x k` and a `k x n` matrix, each operand a pointer with
/// its (column, row) strides. `dst` is written, never read: it may be
/// uninitialised memory.
///
/// # Safety
/// Every element the strides reach lies inside its buffer, and no other thread touches the ones
/// of `dst`.
pub(crate) unsafe fn matmul(
    [m, n, k]: [usize; 3],
    dst: (*mut f32, isize, isize),
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
    threads: Threads,
) {
    let parallelism = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    // SAFETY: the caller's promise; `read_dst = false` keeps gemm from reading `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.1,
            dst.2,
            false,
            lhs.0,
            lhs.1,
            lhs.2,
            rhs.0,
            rhs.1,
            rhs.2,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}
