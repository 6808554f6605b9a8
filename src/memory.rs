//! Process-wide allocator settings.
//!
//! Every training step allocates and frees tensors of tens of megabytes (activations,
//! gradients, im2col buffers, optimizer temporaries). glibc serves blocks that large with a
//! fresh `mmap` and returns them with `munmap` when freed, so each step pays a page fault per
//! 4 KiB page written — on the benchmark machine about as much as the arithmetic of the narrow
//! network (docs/benchmarks.md: +16% training throughput on the reduced widths, +24% on the paper
//! widths with the memory kept). Keeping freed memory in the heap makes later steps reuse
//! pages already mapped. Peak resident memory is unchanged: it is set by the largest step.

/// Makes glibc keep freed memory for reuse (no `mmap` per large block, no trimming of the
/// heap). Call once, first thing in `main`; a no-op on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds and is safe to call at any
    // time; we call it before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
