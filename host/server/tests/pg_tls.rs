//! TLS to PostgreSQL, as the URL's `sslmode` says, against the test
//! server `scripts/with-postgres` starts with a throwaway certificate for
//! `localhost` and `127.0.0.1` (`ASSETS_TEST_PG_CA`). Whether a session is
//! encrypted is what the server itself reports (`pg_stat_ssl`).

use assets_server::pg::session_uses_tls;

/// The test server's URL, and its certificate.
fn server() -> (String, String) {
    let need = |var: &str| {
        std::env::var(var).unwrap_or_else(|_| {
            panic!(
                "{var} is not set: these tests need the TLS-enabled PostgreSQL server `make test` starts \
                 (scripts/with-postgres); by hand: scripts/with-postgres cargo test -p assets-server --test pg_tls"
            )
        })
    };
    (need("ASSETS_TEST_PG"), need("ASSETS_TEST_PG_CA"))
}

fn with(url: &str, params: &str) -> String {
    format!("{url}?{params}")
}

#[test]
fn disable_is_plain_and_prefer_require_and_verify_are_encrypted() {
    let (url, ca) = server();
    assert!(!session_uses_tls(&with(&url, "sslmode=disable")).unwrap());
    assert!(
        session_uses_tls(&url).unwrap(),
        "prefer, the default, takes TLS when offered"
    );
    assert!(session_uses_tls(&with(&url, "sslmode=require")).unwrap());
    assert!(session_uses_tls(&with(&url, &format!("sslmode=verify-full&sslrootcert={ca}"))).unwrap());
    assert!(session_uses_tls(&with(&url, &format!("sslmode=verify-ca&sslrootcert={ca}"))).unwrap());
}

#[test]
fn verify_full_refuses_a_certificate_it_does_not_trust() {
    let (url, _) = server();
    // Without sslrootcert the Mozilla roots are trusted: not a throwaway
    // self-signed certificate.
    let error = format!(
        "{:#}",
        session_uses_tls(&with(&url, "sslmode=verify-full")).unwrap_err()
    );
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}

#[test]
fn verify_full_checks_the_name_and_verify_ca_does_not() {
    let (url, ca) = server();
    // Another name for this machine, not in the certificate.
    let name = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty() && n != "localhost")
        .expect("this test needs the machine's own name in /etc/hostname (not localhost)");
    let renamed = url.replacen("127.0.0.1", &name, 1);
    assert_ne!(renamed, url, "{url} names 127.0.0.1");
    let full = session_uses_tls(&with(&renamed, &format!("sslmode=verify-full&sslrootcert={ca}")));
    let error = format!("{:#}", full.unwrap_err());
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(
        session_uses_tls(&with(&renamed, &format!("sslmode=verify-ca&sslrootcert={ca}"))).unwrap(),
        "verify-ca checks the chain only"
    );
}
