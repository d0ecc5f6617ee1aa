//! The conformance suite every backend runs, unchanged.
//!
//! Each backend has one `tests/conformance.rs`, declared with `harness = false`, that hands
//! [`run`] a factory of fresh, empty stores:
//!
//! ```toml
//! [[test]]
//! name = "conformance"
//! harness = false
//! ```
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     tessera_store::conformance::run(|| async { tessera_memory::MemoryStore::new() })
//! }
//! ```
//!
//! Every case becomes a libtest trial named `<file>::<case>` (`records::insert_rejects_duplicate_id`),
//! so `cargo test --test conformance -- usage::` runs only the usage cases, and `--list`,
//! `--skip`, `--exact` and `--test-threads` work as usual. Each case gets its own store from the
//! factory and its own multi-thread tokio runtime, and fails if it takes longer than
//! two minutes (a deadlock in the backend fails one case instead of hanging the run).
//!
//! Cases never branch on the backend: a case is an `async fn <verb>_<situation>(store)` with a
//! one-line doc comment of the expected outcome, in one file per concern (`records`, `redeem`,
//! `usage`, `mappings`, `audit`, `concurrency`, `watch`). Times are fixed instants, never the
//! clock, and whole milliseconds unless a case is about precision; the `watch` cases wait (up to
//! ten seconds) for reports that arrive asynchronously.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, mpsc};
use std::time::Duration as StdDuration;

use libtest_mimic::{Arguments, Failed, Trial};

use crate::Store;

/// Fail the case with a formatted message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(::libtest_mimic::Failed::from(format!($($msg)+)));
        }
    };
}

/// Fail the case unless both sides are equal, printing both.
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(::libtest_mimic::Failed::from(format!(
                "{}\n  left: {:?}\n right: {:?}",
                format!($($msg)+),
                left,
                right
            )));
        }
    }};
}

/// Fail the case unless the value matches the pattern, printing the value.
macro_rules! ensure_matches {
    ($value:expr, $pat:pat, $($msg:tt)+) => {{
        let value = $value;
        if !matches!(value, $pat) {
            return Err(::libtest_mimic::Failed::from(format!(
                "{}: expected {}, got {:?}",
                format!($($msg)+),
                stringify!($pat),
                value
            )));
        }
    }};
}

/// The cases of one file: `cases![a, b, c]` names each after its file and function.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        vec![$($crate::conformance::Case {
            file: $crate::conformance::file_of(module_path!()),
            name: stringify!($case),
            run: |store| Box::pin($case(store)),
        }),*]
    };
}

mod audit;
mod concurrency;
mod fixtures;
mod ledger;
mod mappings;
mod records;
mod redeem;
mod usage;
mod watch;

/// What a case returns: `Err` with a message says what was wrong.
type Outcome = Result<(), Failed>;

type CaseFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// One conformance case.
struct Case {
    /// The file it is in (`records`).
    file: &'static str,
    /// Its function's name.
    name: &'static str,
    /// Runs it against a fresh store.
    run: fn(Arc<dyn Store>) -> CaseFuture,
}

/// How many worker threads each case's runtime has: enough that concurrent tasks really run
/// in parallel even on a two-core machine.
const WORKER_THREADS: usize = 4;

/// How long one case may take before it fails as hung.
const CASE_TIMEOUT: StdDuration = StdDuration::from_secs(120);

/// Run the whole suite against stores from `factory`, reading libtest's command-line arguments,
/// and return the process exit code (return it from `main`).
///
/// `factory` is called once per case, on that case's runtime, and must give a fresh, empty store
/// that no other case sees (a new in-memory store, a temporary database file, a new schema). A
/// factory that cannot make a store may panic: the case then fails with its message.
///
/// # Examples
///
/// ```ignore
/// fn main() -> std::process::ExitCode {
///     tessera_store::conformance::run(|| async { tessera_memory::MemoryStore::new() })
/// }
/// ```
pub fn run<F, Fut, S>(factory: F) -> ExitCode
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = S>,
    S: Store,
{
    let args = Arguments::from_args();
    libtest_mimic::run(&args, trials(factory)).exit_code()
}

/// Every case as a libtest-mimic [`Trial`] named `<file>::<case>`, for a backend that needs to
/// add trials of its own or run the suite with its own [`Arguments`]. [`run`] is this plus
/// [`libtest_mimic::run`].
pub fn trials<F, Fut, S>(factory: F) -> Vec<Trial>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = S>,
    S: Store,
{
    let factory = Arc::new(factory);
    all_cases()
        .into_iter()
        .map(|case| {
            let factory = Arc::clone(&factory);
            Trial::test(format!("{}::{}", case.file, case.name), move || {
                run_case(&*factory, case.run)
            })
        })
        .collect()
}

/// The names of every case, `<file>::<case>`, in the order [`trials`] builds them.
pub fn case_names() -> Vec<String> {
    all_cases()
        .into_iter()
        .map(|c| format!("{}::{}", c.file, c.name))
        .collect()
}

fn all_cases() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(records::cases());
    all.extend(redeem::cases());
    all.extend(usage::cases());
    all.extend(ledger::cases());
    all.extend(mappings::cases());
    all.extend(audit::cases());
    all.extend(concurrency::cases());
    all.extend(watch::cases());
    all
}

/// The last segment of a module path: the case's file.
fn file_of(module_path: &'static str) -> &'static str {
    module_path.rsplit("::").next().unwrap_or(module_path)
}

/// Run one case on its own multi-thread runtime with a fresh store from `factory`.
fn run_case<F, Fut, S>(factory: &F, case: fn(Arc<dyn Store>) -> CaseFuture) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime for the case: {e}"))?;
    let store: Arc<dyn Store> = Arc::new(rt.block_on(factory()));
    let (tx, rx) = mpsc::channel();
    let handle = rt.spawn(case(store));
    rt.spawn(async move {
        // The receiver is gone only when the case already timed out.
        let _ = tx.send(handle.await);
    });
    let outcome = match rx.recv_timeout(CASE_TIMEOUT) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) if e.is_panic() => {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("a non-string payload");
            Err(Failed::from(format!("case panicked: {msg}")))
        }
        Ok(Err(e)) => Err(Failed::from(format!("case was cancelled: {e}"))),
        Err(_) => Err(Failed::from(format!(
            "case did not finish within {} s: a deadlock or a lost wake-up in the backend?",
            CASE_TIMEOUT.as_secs()
        ))),
    };
    rt.shutdown_background();
    outcome
}

/// Attach what was being done to an error or a missing value.
trait Context<T> {
    /// `Err(e)` or `None` becomes a failure saying `what`.
    fn ctx(self, what: &str) -> Result<T, Failed>;
}

impl<T, E: core::fmt::Display> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, Failed> {
        self.map_err(|e| Failed::from(format!("{what}: {e}")))
    }
}

impl<T> Context<T> for Option<T> {
    fn ctx(self, what: &str) -> Result<T, Failed> {
        self.ok_or_else(|| Failed::from(format!("{what}: got nothing")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_then_case_and_unique() {
        let names = case_names();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate case names");
        for n in &names {
            let (file, case) = n.split_once("::").unwrap();
            assert!(
                [
                    "records",
                    "redeem",
                    "usage",
                    "ledger",
                    "mappings",
                    "audit",
                    "concurrency",
                    "watch"
                ]
                .contains(&file),
                "{n}"
            );
            assert!(!case.is_empty() && !case.contains("::"), "{n}");
        }
    }
}
