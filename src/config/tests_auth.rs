//! Configuration tests: client passwords, ACL users and backend credentials.

use std::time::Duration;

use super::tests::{assert_problem, with_pool};
use super::*;

#[test]
fn auth_settings_are_read_and_secrets_resolved() {
    let dir = std::env::temp_dir().join(format!("shardis-config-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("backend-password");
    std::fs::write(&file, "from-a-file\n").unwrap();
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("SHARDIS_TEST_APP_PASSWORD", "from-env") };
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:6380"
        password = "requirepass"
        auth_failure_delay_ms = 250
        auth_failure_limit = 4
        [[pools]]
        username = "proxy"
        password_file = "{}"
        db = 3
        backends = [
          {{ name = "s1", address = "127.0.0.1:7001" }},
          {{ name = "s2", address = "127.0.0.1:7002", username = "other", password = "inline" }},
        ]
        [[users]]
        name = "app"
        password_env = "SHARDIS_TEST_APP_PASSWORD"
        commands = ["+@read", "-@dangerous"]
        keys = ["app1:*"]
        read_keys = ["shared:*"]
        write_keys = ["log:*"]
        channels = ["news.*"]
        [[users]]
        name = "ops"
        nopass = true
        enabled = false
        "#,
        file.display()
    );
    let c = Config::parse(&text).unwrap();
    assert_eq!(
        c.server.password.as_ref().map(|p| p.digest),
        Some(PasswordDigest::of(b"requirepass"))
    );
    assert_eq!(c.server.auth_failure_delay, Duration::from_millis(250));
    assert_eq!(c.server.auth_failure_limit, 4);
    let p = &c.pools[0];
    assert_eq!(p.db, 3);
    let s1 = p.credentials(&p.backends[0]);
    assert_eq!(s1.username.as_deref(), Some("proxy"));
    assert_eq!(
        s1.password.as_ref().map(|s| s.expose()),
        Some(&b"from-a-file"[..])
    );
    assert_eq!(s1.db, 3);
    let s2 = p.credentials(&p.backends[1]);
    assert_eq!(s2.username.as_deref(), Some("other"));
    assert_eq!(
        s2.password.as_ref().map(|s| s.expose()),
        Some(&b"inline"[..])
    );
    let app = &c.users[0];
    assert_eq!(
        app.password.as_ref().map(|p| (p.digest, p.source.clone())),
        Some((
            PasswordDigest::of(b"from-env"),
            SecretSource::Env("SHARDIS_TEST_APP_PASSWORD".into())
        ))
    );
    assert_eq!(app.read_keys, ["shared:*"]);
    assert!(c.users[1].nopass && !c.users[1].enabled);
    assert!(!c.default_user_off());

    // `shardis check` and the digest name where secrets come from, never what they are.
    let d = c.describe();
    for needle in [
        "password                 set (inline)",
        "password                 set (env SHARDIS_TEST_APP_PASSWORD)",
        &format!("password                 set (file {})", file.display()),
        "username                 proxy",
        "db                       3",
        "username other password set (inline)",
        "[user app]",
        "commands                 +@read -@dangerous",
        "write_keys               log:*",
        "auth_failure_limit       4",
    ] {
        assert!(d.contains(needle), "{needle:?} not in\n{d}");
    }
    for secret in ["requirepass", "from-env", "from-a-file", "inline\n"] {
        assert!(!d.contains(secret), "{secret:?} shown in\n{d}");
    }
    // A changed secret value leaves the digest alone (it is not a hash of secrets).
    let other = text.replace("requirepass", "changed");
    assert_eq!(Config::parse(&other).unwrap().digest, c.digest);

    // /admin/config masks every password.
    let json = c.to_json();
    let rendered = json.to_string();
    for secret in ["requirepass", "from-env", "from-a-file", "\"inline\""] {
        assert!(!rendered.contains(secret), "{secret:?} in {rendered}");
    }
    assert_eq!(json["server"]["password"], MASK);
    assert_eq!(json["pools"][0]["password"], MASK);
    assert_eq!(json["pools"][0]["username"], "proxy");
    assert_eq!(json["pools"][0]["backends"][1]["password"], MASK);
    assert_eq!(json["users"][0]["password"], MASK);
    assert_eq!(json["users"][0]["keys"][0], "app1:*");
    assert!(json["users"][1].get("password").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rejects_bad_auth_settings() {
    let server = |lines: &str| with_pool("").replace("[server]\n", &format!("[server]\n{lines}\n"));
    assert_problem(
        &server("password = \"a\"\npassword_env = \"B\""),
        "server.password: give at most one of password, password_sha256, password_env, password_file",
    );
    assert_problem(
        &server("password_sha256 = \"abc\""),
        "server.password_sha256: must be 64 hex digits",
    );
    assert_problem(&server("password = \"\""), "server.password: is empty");
    assert_problem(
        &server("auth_failure_delay_ms = 60001"),
        "server.auth_failure_delay_ms: must be from 0 to 60000",
    );
    assert_problem(
        &with_pool("db = -1"),
        "pools[0].db: must be from 0 to 1000000",
    );
    assert_problem(
        &with_pool("username = \"a b\""),
        "pools[0].username: must be a non-empty name without spaces",
    );
    let users = |body: &str| format!("{}\n{body}", with_pool(""));
    assert_problem(
        &users("[[users]]\nname = \"app\"\ncommands = [\"+@all\"]"),
        "users[0]: needs a password",
    );
    assert_problem(
        &users("[[users]]\nname = \"app\"\nnopass = true\ncommands = [\"+@raed\"]"),
        "users[0].commands[0]: unknown category \"raed\"",
    );
    assert_problem(
        &users("[[users]]\nname = \"app\"\nnopass = true\nkeys = [\"~app:*\"]"),
        "users[0].keys[0]: \"~app:*\": write the pattern without Redis's '~' prefix",
    );
    assert_problem(
        &users("[[users]]\nname = \"a\"\nnopass = true\n[[users]]\nname = \"a\"\nnopass = true"),
        "users[1].name: \"a\" is already defined by users[0]",
    );
    assert_problem(
        &users("[[users]]\nname = \"a b\"\nnopass = true"),
        "users[0].name: \"a b\" must be at most 128 bytes",
    );
    assert_problem(
        &users("[[users]]\nnopass = true"),
        "users[0].name: is required",
    );
    assert_problem(
        &users("[[users]]\nname = \"a\"\nnopass = true\npassword = \"x\""),
        "users[0].nopass: a user with nopass = true accepts any password",
    );
    assert_problem(
        &server("password = \"x\"").replace(
            "[[pools]]",
            "[[users]]\nname = \"default\"\nnopass = true\n[[pools]]",
        ),
        "users[0].name: the default user is configured by [server] password already",
    );
    assert_problem(
        &users("[[users]]\nname = \"a\"\nnopass = true\ncolor = \"red\""),
        "users[0].color: unknown key",
    );
    // Users without a server password or default entry: the default user is off.
    let c = Config::parse(&users("[[users]]\nname = \"a\"\nnopass = true")).unwrap();
    assert!(c.default_user_off());
    assert!(c.describe().contains("default user             off"));
}
