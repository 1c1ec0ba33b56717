//! Fixed-size, preallocated, memory-mapped files.
//!
//! CommitLog segments, ConsumeQueue files and index files are all a
//! [`MappedFile`]: a file whose full length is reserved on disk with
//! `posix_fallocate` when it is created (so that running out of space is an
//! error at creation, naming the file, instead of a `SIGBUS` on a later write
//! through the mapping) and then mapped once for reading. CommitLog appends
//! go through short-lived [`WriteWindow`]s or `pwrite`, never through that
//! long-lived mapping (see `WriteWindow` for why).
//!
//! Concurrency contract: a region is written by one writer at a time, and a
//! reader only looks at a region after the writer has *published* it (the
//! owner of the file stores the new end with `Release`, readers load it with
//! `Acquire`). Published bytes are never modified again except during
//! recovery, before any reader exists. Under that contract the raw-pointer
//! accesses below never alias a live `&mut`.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::MmapRaw;

use crate::error::{Error, Result};

/// A preallocated file mapped into memory.
#[derive(Debug)]
pub(crate) struct MappedFile {
    path: PathBuf,
    file: File,
    map: MmapRaw,
    len: usize,
    /// The global offset of the file's first byte (also its name).
    base: u64,
}

/// Formats a file name from a global offset: 20 zero-padded digits.
pub(crate) fn file_name(base: u64) -> String {
    format!("{base:020}")
}

/// Parses a name made by [`file_name`].
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) { name.parse().ok() } else { None }
}

impl MappedFile {
    /// Creates `dir/<base>` with `len` bytes reserved on disk.
    pub fn create(dir: &Path, base: u64, len: u64) -> Result<Arc<Self>> {
        let path = dir.join(file_name(base));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(Error::io("create", &path))?;
        if let Err(e) = reserve(&file, len) {
            // Leave no half-reserved file behind; the caller may retry later.
            let _ = std::fs::remove_file(&path);
            return Err(Error::Io { op: "reserve space for", path, source: e });
        }
        Self::map(path, file, base, len)
    }

    /// Opens an existing file, growing it to `len` if it was cut short.
    pub fn open(path: PathBuf, base: u64, len: u64) -> Result<Arc<Self>> {
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(Error::io("open", &path))?;
        let actual = file.metadata().map_err(Error::io("stat", &path))?.len();
        if actual != len {
            if actual > len {
                return Err(Error::Corrupt {
                    path,
                    offset: base,
                    position: 0,
                    reason: format!("file is {actual} bytes, larger than the configured {len}"),
                });
            }
            tracing::warn!(path = %path.display(), actual, expected = len, "file is shorter than configured; extending it");
            reserve(&file, len).map_err(Error::io("extend", &path))?;
        }
        Self::map(path, file, base, len)
    }

    fn map(path: PathBuf, file: File, base: u64, len: u64) -> Result<Arc<Self>> {
        let map = MmapRaw::map_raw(&file).map_err(Error::io("map", &path))?;
        // Readers follow the writer closely; readahead would read (and
        // zero-fill) pages of the unwritten tail that appends fill anyway.
        map.advise(memmap2::Advice::Random).map_err(Error::io("advise", &path))?;
        let len = usize::try_from(len).map_err(|_| Error::InvalidConfig {
            field: "segment_size",
            reason: "larger than the address space".into(),
        })?;
        Ok(Arc::new(Self { path, file, map, len, base }))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Global offset of the first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Global offset one past the last byte.
    pub fn end(&self) -> u64 {
        self.base + self.len as u64
    }

    /// A shared view of `pos..pos + len`.
    ///
    /// The caller must only ask for published bytes (see the module docs).
    pub fn bytes(&self, pos: usize, len: usize) -> &[u8] {
        assert!(pos.checked_add(len).is_some_and(|e| e <= self.len), "read past mapped file end");
        // SAFETY: in bounds of a live mapping; published bytes are not
        // written concurrently (module contract).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(pos), len) }
    }

    /// The bytes from `pos` to the end of the file.
    pub fn tail(&self, pos: usize) -> &[u8] {
        self.bytes(pos, self.len - pos)
    }

    /// A zero-copy [`Bytes`] of published bytes that keeps the mapping alive.
    pub fn slice(self: &Arc<Self>, pos: usize, len: usize) -> Bytes {
        assert!(pos.checked_add(len).is_some_and(|e| e <= self.len), "slice past mapped file end");
        Bytes::from_owner(MapSlice { file: Arc::clone(self), pos, len })
    }

    /// Mutable access to an unpublished region.
    ///
    /// # Safety
    /// Nobody else may read or write `pos..pos + len` while the returned
    /// slice lives: the region is unpublished and the caller is its only
    /// writer.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn region_mut(&self, pos: usize, len: usize) -> &mut [u8] {
        assert!(pos.checked_add(len).is_some_and(|e| e <= self.len), "write past mapped file end");
        // SAFETY: in bounds; exclusivity is the caller's obligation.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(pos), len) }
    }

    /// Writes `bytes` at `pos` with `pwrite` (not through the mapping).
    ///
    /// Pages written this way are never mapped writable, so flushing them
    /// needs no write-protection of page tables (and no TLB shootdowns);
    /// readers still see the bytes through the mapping, which shares the
    /// page cache. The region must be unpublished, as for
    /// [`MappedFile::region_mut`].
    pub fn write_at(&self, pos: usize, bytes: &[u8]) -> std::io::Result<()> {
        assert!(pos.checked_add(bytes.len()).is_some_and(|e| e <= self.len), "write past mapped file end");
        std::os::unix::fs::FileExt::write_all_at(&self.file, bytes, pos as u64)
    }

    /// Maps `pos..pos + len` writable on its own and faults it in, for
    /// appends. `pos` must be a multiple of the page size.
    pub fn write_window(&self, pos: usize, len: usize) -> std::io::Result<WriteWindow> {
        let len = len.min(self.len.saturating_sub(pos));
        let map = memmap2::MmapOptions::new().offset(pos as u64).len(len).map_raw(&self.file)?;
        // Fault the pages in now (off the append path when a background
        // thread prepares the window); old kernels without it just fault later.
        if let Err(e) = map.advise(memmap2::Advice::PopulateWrite) {
            tracing::debug!(error = %e, "cannot prefault a CommitLog window");
        }
        Ok(WriteWindow { map, base: self.base, start: self.base + pos as u64, len })
    }

    /// Flushes `pos..pos + len` (and the metadata needed to read it) to disk.
    ///
    /// Only that range is written back: the pages of the window prepared
    /// ahead of the writer are dirty too, and writing those zeroes out on
    /// every flush would cost I/O for nothing.
    pub fn sync_range(&self, pos: usize, len: usize) -> std::io::Result<()> {
        let len = len.min(self.len.saturating_sub(pos));
        if len == 0 {
            return Ok(());
        }
        self.map.flush_range(pos, len)
    }

    /// Flushes written data (and the metadata needed to read it) to disk.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// Reserves `len` bytes of disk for `file`.
fn reserve(file: &File, len: u64) -> std::io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: plain syscall on an owned, open descriptor.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::from_raw_os_error(rc)) }
}

/// A separately mapped, writable window of a segment that appends copy into.
///
/// Appends write through a window of a few MiB rather than through the
/// whole-file mapping, and the window is unmapped once the writer moves on.
/// Pages written this way stay dirty in the page cache but are no longer
/// mapped writable, so flushing them does not have to write-protect page
/// table entries (one TLB shootdown per page on every flush otherwise).
#[derive(Debug)]
pub(crate) struct WriteWindow {
    map: MmapRaw,
    /// Base offset of the segment the window belongs to.
    base: u64,
    /// Global offset of the window's first byte.
    start: u64,
    len: usize,
}

impl WriteWindow {
    /// Base offset of the window's segment.
    pub fn segment(&self) -> u64 {
        self.base
    }

    /// Global offset of the first byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Global offset one past the last byte.
    pub fn end(&self) -> u64 {
        self.start + self.len as u64
    }

    /// Whether `offset..offset + len` lies inside the window.
    pub fn covers(&self, offset: u64, len: usize) -> bool {
        offset >= self.start && offset + len as u64 <= self.end()
    }

    /// Mutable access to an unpublished region inside the window.
    ///
    /// # Safety
    /// As for [`MappedFile::region_mut`]: nobody else may read or write the
    /// region while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn region_mut(&self, offset: u64, len: usize) -> &mut [u8] {
        assert!(self.covers(offset, len), "write outside the window");
        // SAFETY: in bounds of a live mapping; exclusivity is the caller's obligation.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add((offset - self.start) as usize), len) }
    }
}

/// Owner of a zero-copy body: keeps the mapping alive while bytes are shared.
struct MapSlice {
    file: Arc<MappedFile>,
    pos: usize,
    len: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        self.file.bytes(self.pos, self.len)
    }
}

/// Lists `dir`'s files named by [`file_name`], sorted by base offset.
pub(crate) fn list_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(Error::io("list", dir))? {
        let entry = entry.map_err(Error::io("list", dir))?;
        let name = entry.file_name();
        match name.to_str().and_then(parse_file_name) {
            Some(base) => out.push((base, entry.path())),
            None => tracing::debug!(file = %entry.path().display(), "ignoring unknown file"),
        }
    }
    out.sort_by_key(|(b, _)| *b);
    Ok(out)
}

/// Creates `dir` and its parents, naming it on failure.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))
}

/// Fsyncs a directory so that created, renamed or deleted entries persist.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io("sync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(1073741824), "00000000001073741824");
        assert_eq!(parse_file_name("00000000001073741824"), Some(1073741824));
        assert_eq!(parse_file_name("abc"), None);
        assert_eq!(parse_file_name("0000000000107374182x"), None);
    }

    #[test]
    fn written_bytes_are_visible_through_slices_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let f = MappedFile::create(dir.path(), 4096, 8192).unwrap();
        // SAFETY: single-threaded test; region not shared.
        unsafe { f.region_mut(10, 5) }.copy_from_slice(b"hello");
        let b = f.slice(10, 5);
        assert_eq!(&b[..], b"hello");
        f.sync().unwrap();
        drop(f);
        // The mapping lives as long as the slice does.
        assert_eq!(&b[..], b"hello");
        let path = dir.path().join(file_name(4096));
        let g = MappedFile::open(path, 4096, 8192).unwrap();
        assert_eq!(g.bytes(10, 5), b"hello");
        assert_eq!(g.end(), 4096 + 8192);
        assert!(MappedFile::create(dir.path(), 4096, 8192).is_err(), "create must not clobber");
    }

    #[test]
    fn missing_directory_error_names_the_path() {
        let err = MappedFile::create(Path::new("/nonexistent/rill/dir"), 0, 4096).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/rill/dir/00000000000000000000"), "{text}");
    }
}
