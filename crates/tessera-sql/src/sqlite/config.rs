//! [`SqliteConfig`]: where the database is and how connections behave.

use std::path::PathBuf;
use time::Duration;

/// How hard SQLite makes a commit durable before returning (`PRAGMA synchronous`), in WAL mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Synchronous {
    /// `NORMAL` (the default): a commit survives the process crashing (SIGKILL included); a
    /// power loss or an operating-system crash may undo the last commits before the next
    /// checkpoint, never corrupt the database.
    #[default]
    Normal,
    /// `FULL`: each commit is synced to disk before it returns, so it also survives a power
    /// loss. Choose it when a redemption (an N-use onboarding token) must never be counted
    /// twice across a power cut; each write then costs one `fsync`.
    Full,
}

impl Synchronous {
    pub(crate) const fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

/// How to open a SQLite store.
///
/// A file database uses WAL, `synchronous = NORMAL` (see [`Synchronous`]), foreign keys and a
/// busy timeout, and is safe to share between processes: every change is one `BEGIN IMMEDIATE`
/// transaction. Reads run on the calling thread on one of a few reader connections, each one
/// statement in its own short read transaction; writes go through one writer connection per
/// store. The WAL is checkpointed every [`SqliteConfig::DEFAULT_WAL_AUTOCHECKPOINT`] pages and
/// cut back to [`SqliteConfig::DEFAULT_JOURNAL_SIZE_LIMIT`] bytes after each reset, so it stays
/// bounded under steady traffic.
///
/// An in-memory database is one connection held for the store's whole life: it is gone when the
/// store (and every clone of it) is dropped, and never before.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SqliteConfig {
    /// The database file; `None` for an in-memory database.
    pub path: Option<PathBuf>,
    /// How long a statement waits for another process's lock before failing with
    /// `Unavailable`.
    pub busy_timeout: Duration,
    /// The most idle reader connections kept open (at least one; unused in memory). More are
    /// opened while many reads run at once, and closed when they finish.
    pub max_connections: u32,
    /// Whether to create the file when it does not exist.
    pub create_if_missing: bool,
    /// How durable a commit is; see [`Synchronous`].
    pub synchronous: Synchronous,
    /// The most pages (4 KiB each) the database may grow to (`PRAGMA max_page_count`), `None`
    /// for SQLite's own limit. A change that would grow it further fails whole with
    /// [`crate::Error::Full`] as its store error's source, as on a full disk.
    pub max_page_count: Option<u32>,
    /// How many bytes of the file each connection reads through a memory map
    /// (`PRAGMA mmap_size`): [`SqliteConfig::DEFAULT_MMAP_SIZE`] by default, `0` to read
    /// every page with a system call into SQLite's own page cache.
    pub mmap_size: u64,
    /// How many bytes of pages each connection keeps in its own cache (`PRAGMA cache_size`):
    /// [`SqliteConfig::DEFAULT_CACHE_SIZE`] by default. Pages read through the memory map take
    /// no room there; it holds the pages read from the WAL (those a recent write changed) and
    /// the writer's changed pages until its commit.
    pub cache_size: u64,
}

impl SqliteConfig {
    /// The default memory map per connection: 256 MiB. A lookup then reads the pages of a
    /// database up to that size where the operating system keeps them, with no system call
    /// and no copy (a lookup of an unknown token in a 40,000-token file measured 27 µs → 10 µs
    /// under the same load, against SQLite's default 2 MiB page cache). Address space only:
    /// the pages are the kernel's file cache, shared by every connection and process.
    pub const DEFAULT_MMAP_SIZE: u64 = 256 << 20;

    /// The default page cache per connection: 64 MiB, an upper bound rather than an
    /// allocation (it fills only with pages read from the WAL, or changed by a write, and each
    /// commit by another connection empties it). Pages a write changed are read from the WAL
    /// with a system call and a copy until a checkpoint copies them back; cached, each is read
    /// once per commit instead of once per lookup. The writer keeps a whole ledger batch's
    /// pages in it rather than spilling them into the WAL before its commit.
    pub const DEFAULT_CACHE_SIZE: u64 = 64 << 20;

    /// The default busy timeout: 5 seconds.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::seconds(5);

    /// The default number of idle reader connections kept for a file.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;

    /// WAL pages written before a commit checkpoints them into the database (SQLite's default,
    /// about 4 MiB).
    pub const DEFAULT_WAL_AUTOCHECKPOINT: u32 = 1000;

    /// The size, in bytes, a WAL file is cut back to once a checkpoint has copied it all back
    /// (`PRAGMA journal_size_limit`): 8 MiB.
    pub const DEFAULT_JOURNAL_SIZE_LIMIT: i64 = 8 << 20;

    /// A database file, created when missing.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            path: Some(path.into()),
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            create_if_missing: true,
            synchronous: Synchronous::Normal,
            max_page_count: None,
            mmap_size: Self::DEFAULT_MMAP_SIZE,
            cache_size: Self::DEFAULT_CACHE_SIZE,
        }
    }

    /// A private in-memory database.
    pub const fn in_memory() -> Self {
        Self {
            path: None,
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
            max_connections: 1,
            create_if_missing: true,
            synchronous: Synchronous::Normal,
            max_page_count: None,
            mmap_size: Self::DEFAULT_MMAP_SIZE,
            cache_size: Self::DEFAULT_CACHE_SIZE,
        }
    }

    /// Read up to `bytes` of the file through a memory map (`0`: none); see
    /// [`SqliteConfig::mmap_size`](Self#structfield.mmap_size).
    #[must_use]
    pub const fn mmap_size(mut self, bytes: u64) -> Self {
        self.mmap_size = bytes;
        self
    }

    /// Keep up to `bytes` of pages in each connection's cache; see
    /// [`SqliteConfig::cache_size`](Self#structfield.cache_size).
    #[must_use]
    pub const fn cache_size(mut self, bytes: u64) -> Self {
        self.cache_size = bytes;
        self
    }

    /// Wait this long for a lock.
    #[must_use]
    pub const fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Keep at most this many idle reader connections (at least one).
    #[must_use]
    pub const fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Create the file when missing, or fail.
    #[must_use]
    pub const fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// How durable each commit is.
    #[must_use]
    pub const fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Let the database grow to at most `pages` pages.
    #[must_use]
    pub const fn max_page_count(mut self, pages: u32) -> Self {
        self.max_page_count = Some(pages);
        self
    }
}
