//! The forward pass's activation buffers: zeroed anonymous mappings of
//! their own, made resident before a batch writes them.

/// `n` zeroed `f32`s in an anonymous memory mapping of their own, unmapped
/// when dropped; [`populate`] makes its pages resident.
///
/// Why not a `Vec`: glibc serves allocations this large with `mmap` only
/// until the first one is freed, then raises its threshold to that size
/// and serves the next batch's buffers from the heap, where the word-table
/// rows a batch reads get placed between them and keep the heap from
/// shrinking: a run's peak grew by 2–5 MiB with the allocation order
/// (docs/benchmarks.md).
pub(super) struct Buffer(pub(super) Option<memmap2::MmapMut>);

impl Buffer {
    /// `n` zeroed `f32`s, mapped but not yet resident.
    pub(super) fn mapped(n: usize) -> std::io::Result<Buffer> {
        if n == 0 {
            return Ok(Buffer(None));
        }
        let map = memmap2::MmapOptions::new()
            .len(n * std::mem::size_of::<f32>())
            .map_anon()?;
        Ok(Buffer(Some(map)))
    }

    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.0 {
            Some(m) => &mut m[..],
            None => &mut [],
        }
    }
}

/// Bytes a task of [`populate`] makes resident: a multiple of every page
/// size, so each piece starts on a page of its mapping.
pub(super) const POPULATE_PIECE: usize = 1 << 20;

/// Makes every page of `buffers` resident now (charged to the process, and
/// its cgroup, from this call on), in pieces spread over the current rayon
/// pool: the kernel zeroes each page as it maps it, and the calling thread
/// doing that alone for a batch's 16 MiB of buffers had kept both of the
/// pool's threads waiting for ~2% of a run's wall time (perf,
/// docs/benchmarks.md).
///
/// # Errors
///
/// The kernel's `ENOMEM` when it cannot back the pages.
pub(super) fn populate(buffers: &mut [&mut Buffer]) -> std::io::Result<()> {
    use rayon::prelude::*;
    buffers
        .par_iter_mut()
        .flat_map(|b| b.bytes_mut().par_chunks_mut(POPULATE_PIECE))
        .try_for_each(populate_piece)
}

/// Makes the pages of `piece` (page-aligned, inside one mapping) resident:
/// `MADV_POPULATE_WRITE` on Linux (5.14 on; one call faults in a piece's
/// pages), else, or where the kernel refuses it for another reason than
/// memory, by writing a byte in every page.
fn populate_piece(piece: &mut [u8]) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `piece` is memory this call borrows mutably, starting on
        // a page boundary (`POPULATE_PIECE`); populating faults its pages
        // in writable and leaves their contents as they are.
        let done = unsafe {
            libc::madvise(
                piece.as_mut_ptr().cast(),
                piece.len(),
                libc::MADV_POPULATE_WRITE,
            )
        } == 0;
        if done {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ENOMEM) {
            return Err(error);
        }
        // EINVAL: a kernel before 5.14. Touch the pages instead.
    }
    touch(piece);
    Ok(())
}

/// Writes a zero into every 4 KiB of `piece`: faults in each page (of 4 KiB
/// or more) of fresh anonymous memory, which reads as zeros already.
pub(super) fn touch(piece: &mut [u8]) {
    for page in piece.chunks_mut(4096) {
        page[0] = 0;
    }
}

impl std::ops::Deref for Buffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match &self.0 {
            // SAFETY: the mapping is page-aligned and its length a multiple
            // of 4 bytes (`touched`); every bit pattern is a valid f32, and
            // the slice borrows the mapping.
            Some(m) => unsafe { std::slice::from_raw_parts(m.as_ptr().cast::<f32>(), m.len() / 4) },
            None => &[],
        }
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        match &mut self.0 {
            // SAFETY: as in `deref`, borrowed mutably.
            Some(m) => unsafe {
                std::slice::from_raw_parts_mut(m.as_mut_ptr().cast::<f32>(), m.len() / 4)
            },
            None => &mut [],
        }
    }
}
