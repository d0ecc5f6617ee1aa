//! `tessera init`: create the database, migrate it, create the pepper.

use serde_json::json;
use tessera::core::digest::{KeyId, Pepper};
use zeroize::Zeroizing;

use crate::cli::Global;
use crate::context::{self, Backend, PEPPER_ENV};
use crate::error::{CliError, Result};
use crate::output::Out;

/// Create (or upgrade) the database and make sure a pepper exists, never replacing one.
pub(crate) async fn run(g: &Global) -> Result<()> {
    let out = Out::new(g);
    let backend = Backend::from_global(g)?;
    let from_env = context::pepper_from_env()?.is_some();
    let key_path = context::key_path(g, &backend)?;
    // Decide about the key before touching the database, so a bad key file changes nothing.
    let new_key = if from_env {
        None
    } else if key_path.exists() {
        context::read_key_file(&key_path).map_err(|e| {
            CliError::usage(format!(
                "{e}; tessera init never overwrites a key file: move it away only if no token depends on it"
            ))
        })?;
        None
    } else {
        let pepper = Pepper::generate(KeyId(1))?;
        Some(Zeroizing::new(pepper.expose_hex()))
    };
    let opened = context::open_store(&backend, true).await?;
    let (before, after) = opened.versions;
    let key = match (&new_key, from_env) {
        (Some(hex), _) => {
            context::write_key_file(&key_path, hex)?;
            format!("created {} (mode 0600)", key_path.display())
        }
        (None, true) => format!("using {PEPPER_ENV}; no key file written"),
        (None, false) => format!("kept the existing {}", key_path.display()),
    };
    let database = match before {
        None => format!("created {} at schema version {after}", backend.describe()),
        Some(b) if b < after => {
            format!(
                "upgraded {} from schema version {b} to {after}",
                backend.describe()
            )
        }
        Some(_) => format!(
            "{} is already at schema version {after}",
            backend.describe()
        ),
    };
    let human = format!(
        "{database}\npepper: {key}\nKeep the pepper out of database backups and never lose it: without it no token validates."
    );
    let db_json = match &backend {
        Backend::Sqlite(p) => json!({ "backend": "sqlite", "path": p.display().to_string() }),
        Backend::Postgres(_, schema) => json!({ "backend": "postgres", "schema": schema }),
    };
    out.result(
        &human,
        &json!({
            "database": db_json,
            "schema_version": after,
            "previous_schema_version": before,
            "pepper": {
                "source": if from_env { "env" } else { "file" },
                "key_file": (!from_env).then(|| key_path.display().to_string()),
                "created": new_key.is_some(),
            },
        }),
    )
}
