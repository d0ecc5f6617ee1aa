//! The conformance suite of `tessera-store`, run unchanged against [`MemoryStore`].

use std::process::ExitCode;

use tessera_memory::MemoryStore;

fn main() -> ExitCode {
    tessera_store::conformance::run(|| async { MemoryStore::new() })
}
