//! The command line, run as a newcomer would: `tenant create`, `user password`, and a bad setting
//! at start-up.

use std::process::Command;

fn keyroll(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyroll"));
    c.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("KEYROLL_DATA_DIR", dir).current_dir(dir);
    c
}

fn temp_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("keyroll-cli-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn tenant_create_prints_the_id_and_root_key_once() {
    let dir = temp_dir();
    let out = keyroll(&dir)
        .args(["tenant", "create", "--name", "Acme", "--owner-email", "ops@acme.test", "--json"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert!(v["tenant_id"].as_str().is_some_and(|t| t.starts_with("ten_")));
    let root = v["root_key"].as_str().expect("root key");
    assert!(keyroll::domain::ApiKey::parse(root).is_ok_and(|k| k.is_root()));
    assert!(dir.join("keyroll.db").exists(), "SQLite under the data directory");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(root), "the key is not logged");

    let human = keyroll(&dir)
        .args(["tenant", "create", "--name", "Globex", "--owner-email", "ops@globex.test"])
        .output()
        .expect("runs");
    assert!(human.status.success());
    assert!(String::from_utf8_lossy(&human.stdout).contains("shown once"));

    // The owner made here has no dashboard password until one is set (or reset by email).
    let set = |email: &str, password: &str| {
        use std::io::Write;
        let mut child = keyroll(&dir)
            .args(["user", "password", "--email", email])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runs");
        child.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("written");
        child.wait_with_output().expect("ends")
    };
    let ok = set("ops@acme.test", "a long enough password");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let short = set("ops@acme.test", "short");
    assert!(!short.status.success() && String::from_utf8_lossy(&short.stderr).contains("10 to 128"));
    let nobody = set("nobody@acme.test", "a long enough password");
    assert!(!nobody.status.success() && String::from_utf8_lossy(&nobody.stderr).contains("no user"));

    let bad = keyroll(&dir)
        .args(["tenant", "create", "--name", "X", "--owner-email", "not-an-email"])
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--owner-email"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_bad_setting_stops_start_up_naming_it() {
    let dir = temp_dir();
    for (var, value) in [
        ("KEYROLL_LISTEN", "nowhere"),
        ("KEYROLL_LOG_FORMAT", "xml"),
        ("KEYROLL_DATABASE_URL", "mysql://localhost/x"),
        ("KEYROLL_REDIS_URL", "http://localhost"),
        ("KEYROLL_CACHE__L1_CAPACITY", "lots"),
    ] {
        let out = keyroll(&dir).arg("serve").env(var, value).output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn keyroll_toml_and_file_secrets_are_read() {
    let dir = temp_dir();
    std::fs::write(dir.join("keyroll.toml"), "listen = \"not-an-address\"\n").expect("toml written");
    let out = keyroll(&dir).arg("serve").output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEYROLL_LISTEN"), "the file's value was read");
    // The environment wins over the file.
    std::fs::write(dir.join("keyroll.toml"), "log_format = \"json\"\n").expect("toml written");
    let out = keyroll(&dir).arg("serve").env("KEYROLL_LOG_FORMAT", "xml").output().expect("runs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEYROLL_LOG_FORMAT"));
    // A secret read from a file.
    std::fs::write(dir.join("db-url"), "mysql://nope\n").expect("secret written");
    let out = keyroll(&dir).arg("migrate").env("KEYROLL_DATABASE_URL_FILE", dir.join("db-url")).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEYROLL_DATABASE_URL"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tenant_invite_link_prints_a_single_use_sign_up_link() {
    let dir = temp_dir();
    let out = keyroll(&dir)
        .env("KEYROLL_SIGNUP", "invite")
        .env("KEYROLL_PUBLIC_URL", "https://keys.example.test/")
        .args(["tenant", "invite-link", "--days", "3"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let link = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let token = link.strip_prefix("https://keys.example.test/signup?invite=").expect("a sign-up link");
    assert_eq!(token.len(), 43, "32 random bytes, base64url");
    assert!(out.stderr.is_empty(), "no warning while the policy is invite");
    let warned = keyroll(&dir).args(["tenant", "invite-link"]).output().expect("runs");
    assert!(String::from_utf8_lossy(&warned.stderr).contains("KEYROLL_SIGNUP=invite"), "says the link needs invite");
    let bad = keyroll(&dir).args(["tenant", "invite-link", "--days", "0"]).output().expect("runs");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--days"));
    let _ = std::fs::remove_dir_all(&dir);
}
