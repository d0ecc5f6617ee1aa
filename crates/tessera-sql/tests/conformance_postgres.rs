//! The conformance suite of `tessera-store`, run unchanged against [`PostgresStore`], each case
//! in a fresh schema of the server `TESSERA_TEST_POSTGRES_URL` names.
//!
//! Without that variable a developer's run prints a skip and passes; under `CI=true` an unset
//! or unreachable server fails the run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use common::Postgres;
use libtest_mimic::Arguments;
use tessera_sql::postgres::{PostgresConfig, PostgresStore};
use tessera_store::conformance::trials;

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let url = match common::postgres() {
        Postgres::Run(url) => url,
        Postgres::Skip => return ExitCode::SUCCESS,
        Postgres::Fail(why) => {
            eprintln!("{why}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A server that is named but does not answer fails the run, in CI or not.
    if let Err(e) = rt.block_on(PostgresStore::connect(&url)) {
        eprintln!(
            "{} is set but the server cannot be used: {e}",
            common::POSTGRES_URL_VAR
        );
        return ExitCode::FAILURE;
    }
    let schemas = Arc::new(Mutex::new(Vec::new()));
    let created = Arc::clone(&schemas);
    let factory_url = url.clone();
    let cases = trials(move || {
        let schema = common::fresh_schema();
        created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(schema.clone());
        let config = PostgresConfig::new(factory_url.as_str())
            .schema(&schema)
            .expect("a valid schema name")
            .max_connections(8);
        async move {
            let store = PostgresStore::connect_with(config)
                .await
                .expect("connect to the test server");
            store.migrate().await.expect("migrate a fresh schema");
            store
        }
    });
    let code = libtest_mimic::run(&args, cases).exit_code();
    let schemas = schemas
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    rt.block_on(drop_schemas(&url, &schemas));
    code
}

/// Remove the schemas this run created.
async fn drop_schemas(url: &str, schemas: &[String]) {
    let pool = match sqlx::PgPool::connect(url).await {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("could not connect to drop the test schemas: {e}");
            return;
        }
    };
    for schema in schemas {
        // Names come from `common::fresh_schema`: plain identifiers.
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        if let Err(e) = sqlx::raw_sql(&drop).execute(&pool).await {
            eprintln!("could not drop test schema {schema}: {e}");
        }
    }
    pool.close().await;
}
