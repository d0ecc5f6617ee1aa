//! The conformance suite of `tessera-store`, run unchanged against [`SqliteStore`]: once on a
//! fresh temporary WAL file per case (trials marked `[file]`), once in memory (`[memory]`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use libtest_mimic::Arguments;
use tessera_sql::SqliteStore;
use tessera_store::conformance::trials;

fn main() -> ExitCode {
    let args = Arguments::from_args();
    // Every case's file lives in this directory, removed when the run ends.
    let dir = match tempfile::Builder::new().prefix("tessera-sqlite-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cannot create a temporary directory for the test databases: {e}");
            return ExitCode::FAILURE;
        }
    };
    let root = Arc::new(dir.path().to_owned());
    let next = Arc::new(AtomicUsize::new(0));
    let file = trials(move || {
        let path = root.join(format!("case-{}.db", next.fetch_add(1, Ordering::Relaxed)));
        async move {
            let store = SqliteStore::open(&path)
                .await
                .expect("open a fresh database file");
            store
                .migrate()
                .await
                .expect("migrate the fresh database file");
            store
        }
    });
    let memory = trials(|| async {
        let store = SqliteStore::open_in_memory()
            .await
            .expect("open an in-memory database");
        store
            .migrate()
            .await
            .expect("migrate the in-memory database");
        store
    });
    let all = file
        .into_iter()
        .map(|t| t.with_kind("file"))
        .chain(memory.into_iter().map(|t| t.with_kind("memory")))
        .collect();
    let code = libtest_mimic::run(&args, all).exit_code();
    drop(dir);
    code
}
