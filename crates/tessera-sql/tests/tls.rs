//! PostgreSQL over TLS: a throwaway server of its own with `ssl=on`, a certificate signed by a
//! CA made here, and TCP admitted over TLS only. The backend connects, migrates, stores, finds
//! and watches through it; a wrong CA, a wrong host name under `verify-full` and a connection
//! without TLS are refused.
//!
//! Runs where the other PostgreSQL tests run (`TESSERA_TEST_POSTGRES_URL` set, or `CI=true`,
//! where failing to start the server is a failure, never a skip). Certificates come from the
//! `openssl` command.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

#[cfg(feature = "postgres")]
mod postgres {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::Arc;

    use tessera_sql::Error;
    use tessera_sql::postgres::{PostgresConfig, PostgresStore, SslMode};
    use tessera_store::{Change, Store, Watcher};

    use crate::common::{self, fixtures};

    /// A PostgreSQL server with TLS, stopped and removed on drop.
    struct TlsServer {
        /// `postgres://postgres@127.0.0.1:PORT/tessera_test`, no sslmode.
        url: String,
        pg_dir: String,
        certs: tempfile::TempDir,
    }

    impl TlsServer {
        fn ca(&self) -> PathBuf {
            self.certs.path().join("ca.crt")
        }

        fn wrong_ca(&self) -> PathBuf {
            self.certs.path().join("wrong-ca.crt")
        }

        /// The URL with `localhost` for the host: not a name the certificate carries.
        fn url_by_name(&self) -> String {
            self.url.replace("@127.0.0.1:", "@localhost:")
        }
    }

    impl Drop for TlsServer {
        fn drop(&mut self) {
            let _ = Command::new(script("postgres-down"))
                .arg(&self.pg_dir)
                .status();
        }
    }

    fn script(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../.ci")
            .join(name)
    }

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (install the openssl package)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A CA, a server certificate it signs for 127.0.0.1 only, and an unrelated CA.
    fn make_certs() -> tempfile::TempDir {
        let certs = tempfile::tempdir().unwrap();
        let d = certs.path();
        for (key, crt, cn) in [
            ("ca.key", "ca.crt", "Tessera test CA"),
            ("wrong-ca.key", "wrong-ca.crt", "Someone else's CA"),
        ] {
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-sha256",
                    "-days",
                    "2",
                    "-keyout",
                    key,
                    "-out",
                    crt,
                    "-subj",
                    &format!("/CN={cn}"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            );
        }
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-sha256",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-sha256",
                "-extfile",
                "server.ext",
                "-out",
                "server.crt",
            ],
        );
        certs
    }

    /// The TLS server, or `None` (skip, printed) where PostgreSQL tests do not run.
    fn start() -> Option<TlsServer> {
        if std::env::var(common::POSTGRES_URL_VAR).is_err() && !common::in_ci() {
            println!(
                "SKIPPED: PostgreSQL TLS test, because {} is unset and this is not CI",
                common::POSTGRES_URL_VAR
            );
            return None;
        }
        let certs = make_certs();
        let out = Command::new(script("postgres-up"))
            .env("TESSERA_PG_SSL_DIR", certs.path())
            .env_remove(common::POSTGRES_URL_VAR)
            .output()
            .expect("run .ci/postgres-up");
        assert!(
            out.status.success(),
            "postgres-up with TLS failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let var = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("postgres-up printed no {name}: {stdout}"))
                .to_owned()
        };
        Some(TlsServer {
            url: var(common::POSTGRES_URL_VAR),
            pg_dir: var("TESSERA_PG_DIR"),
            certs,
        })
    }

    struct Counting(std::sync::atomic::AtomicUsize);

    impl Watcher for Counting {
        fn changed(&self, _: Change) -> bool {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            true
        }

        fn wanted(&self) -> bool {
            true
        }
    }

    fn connect_error(result: Result<PostgresStore, Error>) -> String {
        match result {
            Ok(_) => panic!("the connection was accepted"),
            Err(e @ Error::Connect(_)) => {
                let mut chain = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    chain.push_str(&format!(" <- {s}"));
                    source = s.source();
                }
                chain
            }
            Err(other) => panic!("expected a connection error, got {other}"),
        }
    }

    /// The backend works over a verified TLS connection, and refuses every connection it
    /// cannot trust.
    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_over_tls_verifies_the_server() {
        let Some(server) = start() else {
            return;
        };

        // A CA given: verify-full by default, and everything works through it.
        let config = PostgresConfig::new(&server.url).ssl_root_cert(server.ca());
        assert_eq!(config.effective_ssl_mode(), SslMode::VerifyFull);
        let store = PostgresStore::connect_with(config)
            .await
            .expect("connect over TLS with the right CA");
        store.migrate().await.unwrap();
        let watcher = Arc::new(Counting(0.into()));
        assert!(
            store.watch(watcher.clone()).await.unwrap(),
            "watch over TLS"
        );
        let (_secret, record) = fixtures::issue(
            &fixtures::pepper(),
            fixtures::deployment("over-tls"),
            tessera_core::format::Spelling::Prefixed,
        );
        store.insert(&record, &[]).await.unwrap();
        let found = store.find_by_digest(&record.digest).await.unwrap().unwrap();
        assert_eq!(found.id, record.id);
        store.close().await;

        // The same from PEM in memory, and with sslrootcert= in the URL.
        let pem = std::fs::read(server.ca()).unwrap();
        let store =
            PostgresStore::connect_with(PostgresConfig::new(&server.url).ssl_root_cert_pem(pem))
                .await
                .expect("connect with the CA from memory");
        store.close().await;
        let in_url = format!("{}?sslrootcert={}", server.url, server.ca().display());
        assert_eq!(
            PostgresConfig::new(&in_url).effective_ssl_mode(),
            SslMode::VerifyFull
        );
        PostgresStore::connect(&in_url)
            .await
            .expect("connect with sslrootcert in the URL")
            .close()
            .await;

        // A wrong CA is refused, under verify-full and under require (verify-ca, as libpq).
        for mode in [None, Some(SslMode::Require), Some(SslMode::VerifyCa)] {
            let mut config = PostgresConfig::new(&server.url).ssl_root_cert(server.wrong_ca());
            if let Some(mode) = mode {
                config = config.ssl_mode(mode);
            }
            let why = connect_error(PostgresStore::connect_with(config).await);
            assert!(
                why.to_ascii_lowercase().contains("certificate")
                    || why.to_ascii_lowercase().contains("issuer"),
                "{mode:?}: {why}"
            );
        }

        // verify-full checks the host name: the certificate is for 127.0.0.1, not localhost.
        // (verify-ca checks it too with sqlx 0.8 on this rustls: stricter than libpq, see
        // SslMode::VerifyCa.)
        let why = connect_error(
            PostgresStore::connect_with(
                PostgresConfig::new(server.url_by_name()).ssl_root_cert(server.ca()),
            )
            .await,
        );
        assert!(why.contains("localhost"), "{why}");

        // Without TLS the server admits nothing; require without a CA encrypts unverified.
        connect_error(
            PostgresStore::connect_with(
                PostgresConfig::new(&server.url).ssl_mode(SslMode::Disable),
            )
            .await,
        );
        connect_error(PostgresStore::connect(&format!("{}?sslmode=disable", server.url)).await);
        PostgresStore::connect(&format!("{}?sslmode=require", server.url))
            .await
            .expect("require without a CA")
            .close()
            .await;
    }

    /// A malformed sslmode is a configuration error naming the valid ones.
    #[tokio::test]
    async fn a_bad_sslmode_is_a_config_error() {
        let Err(e) =
            PostgresStore::connect("postgres://u@127.0.0.1:1/db?sslmode=verify_full").await
        else {
            panic!("a bad sslmode was accepted");
        };
        assert!(
            matches!(
                e,
                Error::Config {
                    what: "sslmode",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("verify-full"), "{e}");
    }
}
