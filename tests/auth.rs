//! Client authentication and ACL users, and backend credentials, against real redis-servers:
//! NOAUTH before AUTH, WRONGPASS, redis-cli / the redis crate / redis-py / ioredis logging in
//! with a user name and password, ACL rules checked before anything reaches a backend, paced
//! and limited failed AUTHs, reloads, secrets kept out of every output, and backends that
//! require a password or an ACL user (and one that refuses ours: down, kind `auth`, quiet log).

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::ops::{backends, http_get, must_metric, start_redises, status, wait_for, with_server};
use common::{Client, Frame, Redis, Shardis, bulk, err, int, ok, shardis_config};

const PASSWORD: &str = "s3cret-Pa55";
const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NOPERM_KEYS: &str =
    "NOPERM this user has no permissions to access one of the keys used as arguments";
const NOPERM_CHANNELS: &str =
    "NOPERM this user has no permissions to access one of the channels used as arguments";

fn noperm_command(name: &str) -> Frame {
    err(&format!(
        "NOPERM this user has no permissions to run the '{name}' command"
    ))
}

/// `[[users]]` for most tests: `reader` may run read commands on `app1:*`; `app` may run
/// anything on `app1:*` and publish/subscribe on `news.*`; `off` is disabled.
const USERS: &str = r#"
[[users]]
name = "reader"
password = "rpw"
commands = ["+@read"]
keys = ["app1:*"]

[[users]]
name = "app"
password_sha256 = "SHA_OF_APW"
commands = ["+@all", "-flushall"]
keys = ["app1:*"]
channels = ["news.*"]

[[users]]
name = "off"
password = "opw"
enabled = false
commands = ["+@all"]
keys = ["*"]
"#;

/// Redis-servers and a shardis over them whose configuration has `server` lines in
/// `[server]`, `pool` lines in the pool, and `tail` appended (`[[users]]`).
struct Setup {
    redis: Vec<Redis>,
    proxy: Shardis,
}

fn config(redis: &[Redis], server: &str, pool: &str, tail: &str) -> String {
    let tail = tail.replace("SHA_OF_APW", &sha256_hex("apw"));
    let mut config = shardis_config(&backends(redis), pool);
    if !server.is_empty() {
        config = with_server(&config, server);
    }
    format!("{config}\n{tail}")
}

impl Setup {
    fn start(n: usize, server: &str, tail: &str) -> Setup {
        let redis = start_redises(n);
        let config = config(&redis, server, "", tail);
        let proxy = Shardis::start(&config);
        Setup { redis, proxy }
    }

    fn client(&self) -> Client {
        self.proxy.client()
    }

    /// A client logged in as `user`.
    fn login(&self, user: &str, password: &str) -> Client {
        let mut c = self.client();
        assert_eq!(c.cmd_str(&["AUTH", user, password]), ok(), "AUTH {user}");
        c
    }

    /// Calls of `command` on every backend together (INFO commandstats).
    fn backend_calls(&self, command: &str) -> u64 {
        self.redis
            .iter()
            .map(|r| calls(&mut r.client(), command))
            .sum()
    }
}

/// `cmdstat_<command>:calls=N` of one redis-server.
fn calls(c: &mut Client, command: &str) -> u64 {
    let info = c.cmd_str(&["INFO", "commandstats"]).as_text();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("calls is a number"))
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn metrics(proxy: &Shardis) -> String {
    let r = http_get(proxy.admin, "/metrics");
    assert_eq!(r.status, 200);
    r.body
}

#[test]
fn a_password_gates_every_command_until_auth() {
    let s = Setup::start(2, &format!("password = {PASSWORD:?}"), "");
    let mut c = s.client();
    assert_eq!(c.cmd_str(&["GET", "k"]), err(NOAUTH));
    assert_eq!(c.cmd_str(&["SET", "k", "v"]), err(NOAUTH));
    assert_eq!(
        c.cmd_str(&["PING"]),
        err(NOAUTH),
        "Redis 7 refuses PING too"
    );
    assert_eq!(c.cmd_str(&["MULTI"]), err(NOAUTH));
    assert_eq!(
        c.cmd_str(&["HELLO", "3"]),
        err(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO AUTH <user> <pass> option can be used to authenticate the client and select \
             the RESP protocol version at the same time"
        )
    );
    assert_eq!(c.cmd_str(&["AUTH", "nope"]), err(WRONGPASS));
    assert_eq!(c.cmd_str(&["AUTH", "default", "nope"]), err(WRONGPASS));
    assert_eq!(c.cmd_str(&["AUTH", "nobody", PASSWORD]), err(WRONGPASS));
    assert_eq!(c.cmd_str(&["GET", "k"]), err(NOAUTH));
    assert_eq!(s.backend_calls("set"), 0, "nothing reached a backend");

    assert_eq!(c.cmd_str(&["AUTH", PASSWORD]), ok());
    assert_eq!(c.cmd_str(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd_str(&["GET", "k"]), bulk("v"));
    assert_eq!(c.cmd_str(&["ACL", "WHOAMI"]), bulk("default"));
    // RESET logs out, as in Redis.
    assert_eq!(c.cmd_str(&["RESET"]), Frame::Simple("RESET".into()));
    assert_eq!(c.cmd_str(&["GET", "k"]), err(NOAUTH));

    let mut c = s.client();
    assert_eq!(c.cmd_str(&["AUTH", "default", PASSWORD]), ok());
    assert_eq!(c.cmd_str(&["GET", "k"]), bulk("v"));

    // HELLO 3 AUTH logs in and switches protocol in one step.
    let mut c = s.client();
    match c.cmd_str(&["HELLO", "3", "AUTH", "default", PASSWORD]) {
        Frame::Map(_) => {}
        other => panic!("HELLO 3 AUTH: {other:?}"),
    }
    assert_eq!(c.cmd_str(&["GET", "k"]), bulk("v"));
    let mut c = s.client();
    assert_eq!(
        c.cmd_str(&["HELLO", "2", "AUTH", "default", "nope"]),
        err(WRONGPASS)
    );
    assert_eq!(c.cmd_str(&["QUIT"]), ok(), "QUIT is answered before AUTH");
}

#[test]
fn without_a_password_everyone_is_the_default_user() {
    let s = Setup::start(1, "", "");
    let mut c = s.client();
    assert_eq!(c.cmd_str(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd_str(&["ACL", "WHOAMI"]), bulk("default"));
    assert_eq!(
        c.cmd_str(&["AUTH", "x"]),
        err(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?"
        )
    );
    assert_eq!(c.cmd_str(&["AUTH", "default", "anything"]), ok());
}

#[test]
fn redis_cli_logs_in_with_a_password_and_with_a_user() {
    let s = Setup::start(2, &format!("password = {PASSWORD:?}"), USERS);
    let port = s.proxy.addr.port().to_string();
    let cli = |args: &[&str]| {
        let out = Command::new(common::find_program("redis-cli", "redis-tools"))
            .args(["-h", "127.0.0.1", "-p", &port, "--no-auth-warning"])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["-a", PASSWORD, "SET", "app1:cli", "v"]), "OK");
    assert_eq!(cli(&["-a", PASSWORD, "GET", "app1:cli"]), "v");
    assert_eq!(
        cli(&["--user", "reader", "--pass", "rpw", "GET", "app1:cli"]),
        "v"
    );
    assert_eq!(cli(&["GET", "app1:cli"]), NOAUTH);
    assert!(
        cli(&["-a", "wrong", "GET", "app1:cli"]).contains("NOAUTH"),
        "a wrong -a leaves the client unauthenticated"
    );
}

#[tokio::test]
async fn the_redis_crate_logs_in_with_username_and_password() {
    let s = Setup::start(2, &format!("password = {PASSWORD:?}"), USERS);
    for resp3 in [false, true] {
        let proto = if resp3 { "?protocol=resp3" } else { "" };
        let url = format!("redis://app:apw@{}/{proto}", s.proxy.addr);
        let client = redis::Client::open(url).expect("URL");
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .expect("log in as app");
        let () = redis::cmd("SET")
            .arg("app1:crate")
            .arg("v")
            .query_async(&mut con)
            .await
            .expect("SET");
        let v: String = redis::cmd("GET")
            .arg("app1:crate")
            .query_async(&mut con)
            .await
            .expect("GET");
        assert_eq!(v, "v");
        let denied: redis::RedisResult<()> = redis::cmd("SET")
            .arg("other:crate")
            .arg("v")
            .query_async(&mut con)
            .await;
        let e = denied.expect_err("other:* is not app's");
        assert!(e.to_string().contains("no permissions"), "{e}");

        let url = format!("redis://app:wrong@{}/{proto}", s.proxy.addr);
        let refused = redis::Client::open(url)
            .expect("URL")
            .get_multiplexed_async_connection()
            .await;
        let Err(e) = refused else {
            panic!("a wrong password was accepted")
        };
        // RESP2: AUTH's error, which the crate classifies; RESP3: HELLO's, passed on.
        assert!(
            e.kind() == redis::ErrorKind::AuthenticationFailed
                || e.to_string().contains("WRONGPASS"),
            "{e}"
        );
    }
}

#[test]
fn redis_py_logs_in_with_username_and_password() {
    let has_redis_py = Command::new("python3")
        .args(["-c", "import redis"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_redis_py {
        eprintln!("skipped: redis-py is not installed (python3 -c 'import redis')");
        return;
    }
    // redis-py retries a refused AUTH a few times: no pacing, to keep the test short.
    let s = Setup::start(
        2,
        &format!("password = {PASSWORD:?}\nauth_failure_delay_ms = 0"),
        USERS,
    );
    let script = r#"
import sys, redis
from redis.backoff import NoBackoff
from redis.retry import Retry
port = int(sys.argv[1])
for protocol in (2, 3):
    r = redis.Redis(host="127.0.0.1", port=port, username="app", password="apw", protocol=protocol)
    r.set("app1:py", "v%d" % protocol)
    assert r.get("app1:py") == b"v%d" % protocol
    try:
        r.get("other:py")
        raise SystemExit("other:py was allowed")
    except redis.exceptions.NoPermissionError:
        pass
    try:
        redis.Redis(host="127.0.0.1", port=port, username="app", password="x", protocol=protocol,
                    retry=Retry(NoBackoff(), 0)).ping()
        raise SystemExit("a wrong password was accepted")
    except redis.exceptions.AuthenticationError:
        pass
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &s.proxy.addr.port().to_string()])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "redis-py: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn node_clients_log_in_with_username_and_password() {
    let Some(modules) = common::ops::node_modules() else {
        return;
    };
    let s = Setup::start(2, &format!("password = {PASSWORD:?}"), USERS);
    let script = r#"
const Redis = require("ioredis");
(async () => {
  const port = Number(process.argv[1]);
  const r = new Redis({ host: "127.0.0.1", port, username: "app", password: "apw", lazyConnect: true, maxRetriesPerRequest: 0 });
  await r.connect();
  await r.set("app1:node", "v");
  if ((await r.get("app1:node")) !== "v") throw new Error("GET");
  let denied = false;
  try { await r.get("other:node"); } catch (e) { denied = /NOPERM/.test(e.message); }
  if (!denied) throw new Error("other:node was allowed");
  r.disconnect();
  const bad = new Redis({ host: "127.0.0.1", port, username: "app", password: "x", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  // ioredis reports the AUTH reply as an "error" event, then rejects with "Connection is closed".
  let refused = false;
  bad.on("error", (e) => { refused = refused || /WRONGPASS/.test(e.message); });
  try { await bad.connect(); await bad.ping(); } catch (e) { refused = refused || /WRONGPASS/.test(e.message); }
  bad.disconnect();
  if (!refused) throw new Error("a wrong password was accepted");
  // node-redis 6 opens with HELLO 3 AUTH user pass.
  const { createClient } = require("redis");
  const nr = createClient({ socket: { host: "127.0.0.1", port, reconnectStrategy: false }, username: "app", password: "apw" });
  nr.on("error", () => {});
  await nr.connect();
  await nr.set("app1:node-redis", "v2");
  if ((await nr.get("app1:node-redis")) !== "v2") throw new Error("node-redis GET");
  let nrDenied = false;
  try { await nr.get("other:node"); } catch (e) { nrDenied = /NOPERM/.test(e.message); }
  if (!nrDenied) throw new Error("node-redis: other:node was allowed");
  await nr.quit();
  const nrBad = createClient({ socket: { host: "127.0.0.1", port, reconnectStrategy: false }, username: "app", password: "x" });
  nrBad.on("error", () => {});
  let nrRefused = false;
  try { await nrBad.connect(); } catch (e) { nrRefused = /WRONGPASS/.test(e.message); }
  if (!nrRefused) throw new Error("node-redis: a wrong password was accepted");
  console.log("ok");
})().catch((e) => { console.error(e); process.exit(1); });
"#;
    let out = Command::new("node")
        .args(["-e", script, &s.proxy.addr.port().to_string()])
        .env("NODE_PATH", &modules)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "node clients: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_read_only_user_of_app1_gets_noperm_and_nothing_reaches_a_backend() {
    let s = Setup::start(2, "", USERS);
    for r in &s.redis {
        assert_eq!(r.client().cmd_str(&["SET", "app1:x", "1"]), ok());
    }
    let before = ["get", "set", "mget", "del", "flushall"].map(|c| s.backend_calls(c));

    let mut c = s.login("reader", "rpw");
    assert_eq!(c.cmd_str(&["GET", "app1:x"]), bulk("1"));
    assert_eq!(c.cmd_str(&["SET", "app1:x", "2"]), noperm_command("set"));
    assert_eq!(c.cmd_str(&["GET", "other:x"]), err(NOPERM_KEYS));
    assert_eq!(
        c.cmd_str(&["MGET", "app1:x", "other:y"]),
        err(NOPERM_KEYS),
        "a split command is checked against every key"
    );
    assert_eq!(c.cmd_str(&["MGET", "other:y", "app1:x"]), err(NOPERM_KEYS));
    assert_eq!(c.cmd_str(&["DEL", "app1:x"]), noperm_command("del"));
    assert_eq!(c.cmd_str(&["FLUSHALL"]), noperm_command("flushall"));
    assert_eq!(c.cmd_str(&["ACL", "WHOAMI"]), noperm_command("acl|whoami"));
    let after = ["get", "set", "mget", "del", "flushall"].map(|c| s.backend_calls(c));
    assert_eq!(
        [
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2]
        ],
        [1, 0, 0],
        "only the allowed GET reached a backend"
    );
    assert_eq!(after[3..], before[3..]);

    let text = metrics(&s.proxy);
    assert_eq!(
        must_metric(
            &text,
            r#"shardis_acl_denied_total{user="reader",reason="key"}"#
        ),
        3.0
    );
    assert_eq!(
        must_metric(
            &text,
            r#"shardis_acl_denied_total{user="reader",reason="command"}"#
        ),
        4.0
    );
}

#[test]
fn transactions_scripts_and_channels_are_checked_too() {
    let s = Setup::start(2, "", USERS);
    let mut c = s.login("app", "apw");
    assert_eq!(c.cmd_str(&["ACL", "WHOAMI"]), bulk("app"));
    match c.cmd_str(&["ACL", "CAT"]) {
        Frame::Array(cats) => {
            assert!(cats.contains(&bulk("read")) && cats.contains(&bulk("dangerous")))
        }
        other => panic!("ACL CAT: {other:?}"),
    }
    assert_eq!(c.cmd_str(&["FLUSHALL"]), noperm_command("flushall"));

    // A refused command in MULTI aborts the transaction, as in Redis.
    assert_eq!(c.cmd_str(&["MULTI"]), ok());
    assert_eq!(c.cmd_str(&["SET", "other:t", "1"]), err(NOPERM_KEYS));
    assert_eq!(
        c.cmd_str(&["SET", "app1:t", "1"]),
        Frame::Simple("QUEUED".into())
    );
    assert_eq!(
        c.cmd_str(&["EXEC"]),
        err("EXECABORT Transaction discarded because of previous errors.")
    );
    assert_eq!(s.backend_calls("set"), 0, "nothing of the transaction ran");

    assert_eq!(
        c.cmd_str(&["EVAL", "return 1", "1", "other:e"]),
        err(NOPERM_KEYS)
    );
    assert_eq!(c.cmd_str(&["EVAL", "return 1", "1", "app1:e"]), int(1));
    assert_eq!(s.backend_calls("eval"), 1);

    assert_eq!(c.cmd_str(&["PUBLISH", "other", "m"]), err(NOPERM_CHANNELS));
    assert_eq!(c.cmd_str(&["PUBLISH", "news.a", "m"]), int(0));
    assert_eq!(
        c.cmd_str(&["SUBSCRIBE", "news.a", "other"]),
        err(NOPERM_CHANNELS)
    );
    assert_eq!(c.cmd_str(&["PSUBSCRIBE", "news.*x"]), err(NOPERM_CHANNELS));
    match c.cmd_str(&["SUBSCRIBE", "news.a"]) {
        Frame::Array(items) => assert_eq!(items[0], bulk("subscribe")),
        other => panic!("SUBSCRIBE news.a: {other:?}"),
    }
    let text = metrics(&s.proxy);
    assert_eq!(
        must_metric(
            &text,
            r#"shardis_acl_denied_total{user="app",reason="channel"}"#
        ),
        3.0
    );
}

#[test]
fn disabled_and_unknown_users_get_wrongpass_and_are_counted() {
    let s = Setup::start(1, "", USERS);
    let mut c = s.client();
    // With [[users]] and no [server] password the default user is off.
    assert_eq!(c.cmd_str(&["GET", "k"]), err(NOAUTH));
    assert_eq!(c.cmd_str(&["AUTH", "off", "opw"]), err(WRONGPASS));
    assert_eq!(c.cmd_str(&["AUTH", "ghost", "x"]), err(WRONGPASS));
    assert_eq!(c.cmd_str(&["AUTH", "reader", "x"]), err(WRONGPASS));
    assert_eq!(c.cmd_str(&["AUTH", "anything"]), err(WRONGPASS));
    let text = metrics(&s.proxy);
    for (user, n) in [
        ("off", 1.0),
        ("unknown", 1.0),
        ("reader", 1.0),
        ("default", 1.0),
    ] {
        assert_eq!(
            must_metric(
                &text,
                &format!(r#"shardis_auth_failures_total{{user="{user}"}}"#)
            ),
            n,
            "{user}"
        );
    }
}

/// Reads from `stream` until EOF; panics if it stays open past the deadline.
fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .expect("the proxy closes the connection");
    out
}

#[test]
fn failed_auths_are_slowed_down_and_then_disconnected() {
    let s = Setup::start(
        1,
        &format!("password = {PASSWORD:?}\nauth_failure_delay_ms = 200\nauth_failure_limit = 3"),
        "",
    );
    let mut c = s.client();
    let t = Instant::now();
    assert_eq!(c.cmd_str(&["AUTH", "guess1"]), err(WRONGPASS));
    let first = t.elapsed();
    let t = Instant::now();
    // The command pipelined behind a failure waits with it.
    c.send_raw(&Client::encode(&[b"AUTH", b"guess2"]));
    c.send_raw(&Client::encode(&[b"GET", b"k"]));
    assert_eq!(c.read_reply(), err(WRONGPASS));
    assert_eq!(c.read_reply(), err(NOAUTH));
    let second = t.elapsed();
    assert!(first >= Duration::from_millis(200), "{first:?}");
    assert!(second >= Duration::from_millis(400), "doubled: {second:?}");
    assert!(second < Duration::from_secs(5), "{second:?}");

    // The limit-th failure closes the connection.
    let mut stream = TcpStream::connect(s.proxy.addr).expect("connect");
    use std::io::Write;
    for guess in ["a", "b", "c"] {
        stream
            .write_all(&Client::encode(&[b"AUTH", guess.as_bytes()]))
            .expect("write");
    }
    let replies = String::from_utf8_lossy(&read_to_eof(&mut stream)).into_owned();
    assert_eq!(replies.matches("WRONGPASS").count(), 3, "{replies:?}");

    // A success resets the count.
    let mut c = s.client();
    for _ in 0..2 {
        assert_eq!(c.cmd_str(&["AUTH", "x"]), err(WRONGPASS));
    }
    assert_eq!(c.cmd_str(&["AUTH", PASSWORD]), ok());
    for _ in 0..2 {
        assert_eq!(c.cmd_str(&["AUTH", "x"]), err(WRONGPASS));
    }
    assert_eq!(c.cmd_str(&["PING"]), Frame::Simple("PONG".into()));
}

#[test]
fn secrets_are_never_shown() {
    let dir = common::TempDir::new("auth-secrets");
    let file = dir.path().join("reader.pw");
    std::fs::write(&file, "file-Secret-1\n").expect("write secret file");
    let redis = start_redises(1);
    let tail = format!(
        "{USERS}\n[[users]]\nname = \"filed\"\npassword_file = {:?}\ncommands = [\"+@all\"]\nkeys = [\"*\"]\n\n[[users]]\nname = \"env\"\npassword_env = \"SHARDIS_TEST_PW\"\ncommands = [\"+@all\"]\nkeys = [\"*\"]\n",
        file.display().to_string()
    );
    let config = config(
        &redis,
        &format!("password = {PASSWORD:?}"),
        "password = \"backend-Secret-2\"",
        &tail,
    );
    let proxy = Shardis::start_with_env(
        &config,
        &["--log-level", "debug"],
        &[("SHARDIS_TEST_PW", "env-Secret-3")],
    );
    let secrets = [
        PASSWORD,
        "rpw\"",
        "file-Secret-1",
        "backend-Secret-2",
        "env-Secret-3",
    ];

    let mut c = proxy.client();
    assert_eq!(c.cmd_str(&["AUTH", "filed", "file-Secret-1"]), ok());
    assert_eq!(c.cmd_str(&["AUTH", "env", "env-Secret-3"]), ok());
    assert_eq!(
        c.cmd_str(&["AUTH", "env", "wrong-Secret-4"]),
        err(WRONGPASS)
    );
    let acl_list = format!("{:?}", c.cmd_str(&["ACL", "LIST"]));
    let info = c.cmd_str(&["INFO"]).as_text();
    let config_json = http_get(proxy.admin, "/admin/config").body;
    let check = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args([
            "check",
            "--config",
            &proxy.config_path().display().to_string(),
        ])
        .env("SHARDIS_TEST_PW", "env-Secret-3")
        .output()
        .expect("run shardis check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let check = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(check.contains("password"), "{check}");
    for (what, text) in [
        ("ACL LIST", &acl_list),
        ("INFO", &info),
        ("/admin/config", &config_json),
        ("shardis check", &check),
        ("the log", &proxy.stderr()),
    ] {
        for secret in secrets.iter().chain(&["wrong-Secret-4"]) {
            assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
        }
    }
}

#[test]
fn a_reload_applies_new_passwords_and_users() {
    let redis = start_redises(1);
    let before = config(&redis, "password = \"old-pw\"", "", USERS);
    let proxy = Shardis::start(&before);
    let mut default = proxy.client();
    assert_eq!(default.cmd_str(&["AUTH", "old-pw"]), ok());

    // New password; reader removed; app may now write other:*.
    let users = USERS
        .replace("name = \"reader\"", "name = \"reader2\"")
        .replace(
            "keys = [\"app1:*\"]\nchannels",
            "keys = [\"app1:*\", \"other:*\"]\nchannels",
        );
    proxy.reload(&config(&redis, "password = \"new-pw\"", "", &users));
    wait_for(Duration::from_secs(10), "the new password", || {
        let mut c = proxy.client();
        (c.cmd_str(&["AUTH", "new-pw"]) == ok()).then_some(())
    });
    assert_eq!(proxy.client().cmd_str(&["AUTH", "old-pw"]), err(WRONGPASS));
    assert_eq!(
        proxy.client().cmd_str(&["AUTH", "reader", "rpw"]),
        err(WRONGPASS)
    );
    // A session keeps its login across a password change, as in Redis.
    assert_eq!(default.cmd_str(&["SET", "k", "v"]), ok());
    let mut app = proxy.client();
    assert_eq!(app.cmd_str(&["AUTH", "app", "apw"]), ok());
    assert_eq!(app.cmd_str(&["SET", "other:r", "1"]), ok());
}

#[test]
fn a_removed_user_is_logged_out_by_a_reload() {
    let redis = start_redises(1);
    let proxy = Shardis::start(&config(&redis, "", "", USERS));
    let mut stream = TcpStream::connect(proxy.addr).expect("connect");
    use std::io::Write;
    stream
        .write_all(&Client::encode(&[b"AUTH", b"reader", b"rpw"]))
        .expect("write");
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).expect("+OK");
    assert_eq!(&buf, b"+OK\r\n");
    let without_reader = USERS.replacen("name = \"reader\"", "name = \"reader2\"", 1);
    proxy.reload(&config(&redis, "", "", &without_reader));
    let rest = read_to_eof(&mut stream);
    assert!(rest.is_empty() || !rest.starts_with(b"$"), "{rest:?}");
}

/// Gives `redis` a root password and an ACL user `proxy` with `password`.
fn require_auth(redis: &Redis, password: &str) {
    let mut c = redis.client();
    assert_eq!(
        c.cmd_str(&[
            "ACL",
            "SETUSER",
            "proxy",
            "on",
            &format!(">{password}"),
            "~*",
            "&*",
            "+@all"
        ]),
        ok()
    );
    assert_eq!(
        c.cmd_str(&["CONFIG", "SET", "requirepass", "root-pw"]),
        ok()
    );
}

/// A direct, authenticated connection to a backend that requires a password.
fn root(redis: &Redis) -> Client {
    let mut c = Client::connect(&redis.addr());
    assert_eq!(c.cmd_str(&["AUTH", "root-pw"]), ok());
    c
}

#[test]
fn backends_that_require_a_password_and_an_acl_user_serve_normally() {
    let redis = start_redises(2);
    for r in &redis {
        require_auth(r, "proxy-pw");
    }
    let config = config(
        &redis,
        "",
        "username = \"proxy\"\npassword_env = \"SHARDIS_BACKEND_PW\"\ndb = 3",
        "",
    );
    let proxy = Shardis::start_with_env(&config, &[], &[("SHARDIS_BACKEND_PW", "proxy-pw")]);
    let mut c = proxy.client();
    for i in 0..20 {
        assert_eq!(c.cmd_str(&["SET", &format!("k{i}"), "v"]), ok());
    }
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    match c.cmd_str(&mget) {
        Frame::Array(values) => assert!(values.iter().all(|v| *v == bulk("v"))),
        other => panic!("MGET: {other:?}"),
    }
    // A blocking command takes an exclusive connection, which authenticates too.
    assert_eq!(c.cmd_str(&["RPUSH", "list", "a"]), int(1));
    assert_eq!(
        c.cmd_str(&["BLPOP", "list", "1"]),
        Frame::Array(vec![bulk("list"), bulk("a")])
    );
    // Pub/sub connections authenticate too.
    let mut sub = proxy.client();
    match sub.cmd_str(&["SUBSCRIBE", "ch"]) {
        Frame::Array(items) => assert_eq!(items[0], bulk("subscribe")),
        other => panic!("SUBSCRIBE: {other:?}"),
    }
    wait_for(Duration::from_secs(5), "the subscription", || {
        (c.cmd_str(&["PUBLISH", "ch", "m"]) == int(1)).then_some(())
    });
    match sub.read_reply() {
        Frame::Array(items) => assert_eq!(items[2], bulk("m")),
        other => panic!("message: {other:?}"),
    }
    // Everything is in db 3 of the backends, under the proxy's user.
    let mut total = 0;
    for r in &redis {
        let mut c = root(r);
        assert_eq!(c.cmd_str(&["DBSIZE"]), int(0), "db 0 is untouched");
        assert_eq!(c.cmd_str(&["SELECT", "3"]), ok());
        if let Frame::Integer(n) = c.cmd_str(&["DBSIZE"]) {
            total += n;
        }
        let list = c.cmd_str(&["CLIENT", "LIST"]).as_text();
        assert!(
            list.lines()
                .any(|l| l.contains("name=shardis") && l.contains("user=proxy")),
            "{list}"
        );
    }
    assert_eq!(total, 20);
    assert_eq!(status(&proxy)["backends"][0]["state"], "up");
}

#[test]
fn a_backend_that_refuses_the_password_is_down_with_kind_auth_and_the_log_stays_quiet() {
    let redis = start_redises(2);
    require_auth(&redis[0], "proxy-pw");
    require_auth(&redis[1], "other-pw");
    let config = config(
        &redis,
        "",
        "username = \"proxy\"\npassword = \"proxy-pw\"\nretry_timeout_ms = 200\nfailure_limit = 2",
        "",
    );
    let proxy = Shardis::start(&config);
    let s2 = wait_for(Duration::from_secs(10), "s2 marked down", || {
        let st = status(&proxy);
        let s2 = st["backends"][1].clone();
        (s2["state"] == "down").then_some(s2)
    });
    assert_eq!(s2["last_error_kind"], "auth", "{s2}");
    let last = s2["last_error"].as_str().unwrap_or_default();
    assert!(last.contains("WRONGPASS"), "{last}");
    assert_eq!(status(&proxy)["backends"][0]["state"], "up");

    // Three seconds of outage: attempts are paced, and the log says it a few times at most.
    let accepted = |r: &Redis| {
        let info = root(r).cmd_str(&["INFO", "stats"]).as_text();
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .expect("total_connections_received")
    };
    let before = accepted(&redis[1]);
    std::thread::sleep(Duration::from_secs(3));
    let attempts = accepted(&redis[1]) - before - 1;
    assert!(attempts <= 40, "{attempts} connection attempts in 3 s");
    let log = proxy.stderr();
    let lines = log
        .lines()
        .filter(|l| l.contains("s2") && l.contains("WARN"))
        .count();
    assert!(lines <= 6, "{lines} warnings about s2:\n{log}");
    assert!(
        log.contains("authentication refused") && log.contains("username and password"),
        "{log}"
    );
    let text = metrics(&proxy);
    assert!(
        must_metric(
            &text,
            r#"shardis_backend_errors_total{pool="main",backend="s2",kind="auth"}"#
        ) >= 1.0
    );
    // Keys on s1 are served; keys on s2 get an error, not a hang.
    let mut c = proxy.client();
    let k1 = common::ops::key_on(&config, 0, "k");
    let k2 = common::ops::key_on(&config, 1, "k");
    assert_eq!(c.cmd_str(&["SET", &k1, "v"]), ok());
    match c.cmd_str(&["SET", &k2, "v"]) {
        Frame::Error(e) => assert!(e.contains("s2"), "{e}"),
        other => panic!("SET on s2: {other:?}"),
    }
}
