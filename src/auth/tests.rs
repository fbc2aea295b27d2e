use super::*;

fn config(extra: &str) -> Config {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{extra}\n[[pools]]\nbackends = [{{ address = \"127.0.0.1:7001\" }}]\n"
    );
    Config::parse(&text).unwrap()
}

fn users(text: &str) -> Config {
    Config::parse(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[[pools]]\nbackends = [{{ address = \"127.0.0.1:7001\" }}]\n{text}"
    ))
    .unwrap()
}

#[test]
fn without_configuration_everyone_is_the_default_user() {
    let auth = Auth::open();
    assert!(!auth.required());
    assert!(!auth.configured());
    let default = auth.open_default().unwrap();
    assert!(default.unrestricted);
    // Like Redis without a password: the default user with any password.
    assert!(auth.authenticate(b"default", b"anything").is_some());
    assert!(auth.authenticate(b"someone", b"x").is_none());
    assert_eq!(auth.names(), [Arc::from("default")]);
}

#[test]
fn the_server_password_is_the_default_user_s() {
    let auth = Auth::new(&config("password = \"s3cret\""), None);
    assert!(auth.required());
    assert!(auth.open_default().is_none());
    assert!(auth.authenticate(b"default", b"s3cret").is_some());
    assert!(auth.authenticate(b"default", b"s3cre").is_none());
    assert!(auth.authenticate(b"default", b"").is_none());
    let default = auth.user(b"default").unwrap();
    assert!(default.unrestricted);
    assert_eq!(default.acl_list_line(), "user default on ~* &* +@all");
}

#[test]
fn users_authenticate_with_their_password_when_on() {
    let c = users(
        r#"
[[users]]
name = "app"
password = "apppw"
commands = ["+@read"]
keys = ["app1:*"]

[[users]]
name = "old"
password = "oldpw"
enabled = false
commands = ["+@all"]

[[users]]
name = "hashed"
password_sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
commands = ["+@all"]
keys = ["*"]
channels = ["*"]
"#,
    );
    let auth = Auth::new(&c, None);
    // Users and no [server] password: the default user is off.
    assert!(auth.required());
    assert!(auth.authenticate(b"default", b"").is_none());
    let app = auth.authenticate(b"app", b"apppw").unwrap();
    assert!(!app.unrestricted);
    assert!(auth.authenticate(b"app", b"nope").is_none());
    assert!(auth.authenticate(b"old", b"oldpw").is_none(), "off");
    assert!(
        auth.authenticate(b"hashed", b"secret")
            .unwrap()
            .unrestricted
    );
    assert_eq!(
        auth.names(),
        ["app", "default", "hashed", "old"].map(Arc::<str>::from)
    );
    assert_eq!(
        auth.user(b"app").unwrap().acl_list_line(),
        "user app on ~app1:* resetchannels -@all +@read"
    );
    assert_eq!(
        auth.user(b"old").unwrap().acl_list_line(),
        "user old off resetchannels -@all +@all"
    );
}

#[test]
fn failures_wait_longer_each_time_up_to_a_bound() {
    let auth = Auth::new(
        &config("auth_failure_delay_ms = 100\npassword = \"x\""),
        None,
    );
    let ms = |n| auth.failure_delay(n).as_millis();
    assert_eq!([ms(1), ms(2), ms(3), ms(4)], [100, 200, 400, 800]);
    assert_eq!(ms(1000), MAX_AUTH_DELAY.as_millis());
    assert_eq!(Auth::open().failure_delay(5), Duration::ZERO);
}

#[test]
fn a_reload_closes_the_sessions_of_removed_and_disabled_users() {
    let before = users(
        r#"
[[users]]
name = "a"
password = "pw"
[[users]]
name = "b"
password = "pw"
[[users]]
name = "c"
password = "pw"
channels = ["news"]
[[users]]
name = "d"
password = "pw"
"#,
    );
    let after = users(
        r#"
[[users]]
name = "b"
password = "pw"
enabled = false
[[users]]
name = "c"
password = "pw"
channels = ["sports"]
[[users]]
name = "d"
password = "other"
commands = ["+@all"]
"#,
    );
    let old = Auth::new(&before, None);
    let clients: Vec<Arc<ClientEntry>> = (1..=4).map(crate::clients::Clients::detached).collect();
    let logins: Vec<Login> = ["a", "b", "c", "d"]
        .iter()
        .zip(&clients)
        .map(|(name, c)| old.login(old.user(name.as_bytes()).unwrap().clone(), c))
        .collect();
    assert_eq!(old.sessions("a"), 1);
    assert_eq!(&*clients[0].user(), "a");
    let new = Auth::new(&after, Some(&old));
    old.revoke(&new);
    let killed: Vec<bool> = clients.iter().map(|c| c.is_killed()).collect();
    // a removed, b disabled, c's channels changed; d's password and commands changed: kept.
    assert_eq!(killed, [true, true, true, false]);
    // The registry carries over, and a login leaves it when its session ends.
    assert_eq!(new.sessions("d"), 1);
    drop(logins);
    assert_eq!(new.sessions("d"), 0);
}
