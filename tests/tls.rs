//! TLS on both sides: clients to shardis's TLS listener (rustls, redis-cli, the redis crate),
//! shardis to TLS redis-servers, client certificates both ways, plain clients on the TLS port,
//! the handshake timeout, certificate errors to backends, and rotation on reload. Every
//! certificate is made per test with rcgen.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::ops::{http_get, http_request, key_on, metric, status, wait_for, with_server};
use common::tls::{certificate_der, peer_certificate, tls_connect};
use common::{CLOSE_DEADLINE, Client, Frame, POOL, Pki, Redis, Shardis, bulk, ok, shardis_config};

/// How long a backend or reload may take to show its effect.
const SETTLE: Duration = Duration::from_secs(10);

/// `config` with `section` (a `[server.tls]` table) after its `[server]` table.
fn with_server_tls(config: &str, section: &str) -> String {
    assert!(config.contains("\n[admin]\n"), "not a shardis_config");
    config.replacen("\n[admin]\n", &format!("\n{section}\n[admin]\n"), 1)
}

/// redis-servers, a shardis over them, and the PKI they use.
struct Setup {
    pki: Pki,
    redis: Vec<Redis>,
    proxy: Shardis,
    config: String,
}

/// What to start: `backend_tls` makes the redis-servers speak TLS only (`Some(true)`: they
/// require a client certificate); `server_tls` gives shardis a TLS listener with these extra
/// `[server.tls]` lines; `server` and `pool` lines go to `[server]` and the pool.
struct Spec<'a> {
    backends: usize,
    backend_tls: Option<bool>,
    server_tls: Option<&'a str>,
    server: &'a str,
    pool: &'a str,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Spec {
            backends: 3,
            backend_tls: None,
            server_tls: None,
            server: "",
            pool: "",
        }
    }
}

impl Setup {
    fn start(spec: Spec) -> Setup {
        Setup::start_with(Pki::new(), spec)
    }

    fn start_with(pki: Pki, spec: Spec) -> Setup {
        let redis: Vec<Redis> = (0..spec.backends)
            .map(|_| match spec.backend_tls {
                None => Redis::start(),
                Some(auth) => Redis::start_tls(&pki, auth),
            })
            .collect();
        let config = Setup::config(&pki, &redis, &spec);
        let proxy = Shardis::start(&config);
        Setup {
            pki,
            redis,
            proxy,
            config,
        }
    }

    fn config(pki: &Pki, redis: &[Redis], spec: &Spec) -> String {
        let names = ["s1", "s2", "s3", "s4"];
        let backends: Vec<(&str, String)> = redis
            .iter()
            .zip(names)
            .map(|(r, n)| (n, r.addr()))
            .collect();
        let mut pool = format!("{POOL}\n{}", spec.pool);
        if spec.backend_tls.is_some() && !spec.pool.contains("tls_ca") {
            pool = format!("{pool}\n{}", pki.pool_tls_lines(""));
        }
        let mut config = shardis_config(&backends, &pool);
        if !spec.server.is_empty() {
            config = with_server(&config, spec.server);
        }
        if let Some(extra) = spec.server_tls {
            config = with_server_tls(&config, &pki.server_tls_section(extra));
        }
        config
    }

    /// A TLS client of the proxy, without a client certificate.
    fn tls_client(&self) -> Client {
        self.proxy.tls_client(self.pki.client_config(false))
    }

    /// The backend (index) that holds `key`, asked directly.
    fn holder(&self, key: &str) -> usize {
        let holders: Vec<usize> = (0..self.redis.len())
            .filter(|&i| self.redis[i].client().cmd_str(&["EXISTS", key]) == Frame::Integer(1))
            .collect();
        assert_eq!(holders.len(), 1, "{key} is on {holders:?}");
        holders[0]
    }

    fn metrics(&self) -> String {
        http_get(self.proxy.admin, "/metrics").body
    }
}

/// SET, GET and MGET of keys on every backend, through `client`; checks that each key really
/// is on the backend the ring gives it.
fn serve_across_shards(setup: &Setup, client: &mut Client) {
    assert_eq!(client.cmd_str(&["PING"]), Frame::Simple("PONG".into()));
    let keys: Vec<(usize, String)> = (0..setup.redis.len())
        .flat_map(|b| (0..3).map(move |j| (b, j)))
        .map(|(b, j)| (b, key_on(&setup.config, b, &format!("tls:{j}"))))
        .collect();
    for (i, (_, k)) in keys.iter().enumerate() {
        assert_eq!(client.cmd_str(&["SET", k, &format!("v{i}")]), ok());
        assert_eq!(client.cmd_str(&["GET", k]), bulk(format!("v{i}")));
    }
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(|(_, k)| k.as_str()));
    let expected: Vec<Frame> = (0..keys.len()).map(|i| bulk(format!("v{i}"))).collect();
    assert_eq!(client.cmd_str(&mget), Frame::Array(expected));
    for (b, k) in &keys {
        assert_eq!(setup.holder(k), *b, "{k}");
    }
}

/// True when reading from `stream` ends (end of stream, reset or TLS error) within `deadline`
/// without a reply.
fn refused(client: &mut TcpStream, deadline: Duration) -> Result<(), String> {
    client
        .set_read_timeout(Some(deadline))
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("still open after {deadline:?}; got {got:?}"));
            }
            Err(_) => break,
        }
    }
    // A TLS alert may come first; a Redis reply never.
    if got.windows(5).any(|w| w == b"+PONG") || got.first() == Some(&b'-') {
        return Err(format!("answered in plain text: {got:?}"));
    }
    Ok(())
}

#[test]
fn tls_client_through_the_tls_listener_to_plain_backends() {
    let setup = Setup::start(Spec {
        server_tls: Some(""),
        ..Spec::default()
    });
    let mut client = setup.tls_client();
    serve_across_shards(&setup, &mut client);
    // A large value crosses many TLS records both ways.
    let big = "x".repeat(3 * 1024 * 1024 + 17);
    assert_eq!(client.cmd_str(&["SET", "tls:big", &big]), ok());
    assert_eq!(client.cmd_str(&["GET", "tls:big"]), bulk(&big));
    // A pipeline written in one go is answered in order.
    let mut pipeline = Vec::new();
    for i in 0..500 {
        pipeline.extend(Client::encode(&[
            b"INCR",
            format!("tls:n:{}", i % 7).as_bytes(),
        ]));
    }
    client.send_raw(&pipeline);
    for _ in 0..500 {
        assert!(matches!(client.read_reply(), Frame::Integer(_)));
    }
    // CLIENT LIST shows the TCP peer, not the relay's socket.
    let list = client.cmd_str(&["CLIENT", "LIST"]).as_text();
    assert!(list.contains("addr=127.0.0.1:"), "{list}");
}

#[test]
fn redis_cli_over_tls() {
    let setup = Setup::start(Spec {
        server_tls: Some(""),
        backends: 2,
        ..Spec::default()
    });
    let cli = |args: &[&str]| {
        let out = Command::new(common::find_program("redis-cli", "redis-tools"))
            .args(["--tls", "--cacert"])
            .arg(&setup.pki.ca)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &setup.proxy.addr.port().to_string(),
            ])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "cli:a", "1"]), "OK");
    assert_eq!(cli(&["MSET", "cli:b", "2", "cli:c", "3"]), "OK");
    assert_eq!(cli(&["MGET", "cli:a", "cli:b", "cli:c"]), "1\n2\n3");
    // Without TLS, redis-cli gets no answer from the TLS port.
    let out = Command::new(common::find_program("redis-cli", "redis-tools"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &setup.proxy.addr.port().to_string(),
            "PING",
        ])
        .output()
        .expect("run redis-cli");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("PONG"),
        "{out:?}"
    );
}

#[test]
fn shardis_to_tls_backends() {
    let setup = Setup::start(Spec {
        backend_tls: Some(false),
        ..Spec::default()
    });
    let mut client = setup.proxy.client();
    serve_across_shards(&setup, &mut client);
    // An exclusive connection (BLPOP) and the pub/sub connection are TLS too.
    let mut pusher = setup.proxy.client();
    client.send_raw(&Client::encode(&[b"BLPOP", b"tls:list", b"5"]));
    wait_for(SETTLE, "BLPOP to block on its backend", || {
        setup
            .redis
            .iter()
            .any(|r| {
                r.client()
                    .cmd_str(&["INFO", "clients"])
                    .as_text()
                    .contains("blocked_clients:1")
            })
            .then_some(())
    });
    assert_eq!(
        pusher.cmd_str(&["RPUSH", "tls:list", "a"]),
        Frame::Integer(1)
    );
    assert_eq!(
        client.read_reply(),
        Frame::Array(vec![bulk("tls:list"), bulk("a")])
    );
    let mut sub = setup.proxy.client();
    sub.cmd_str(&["SUBSCRIBE", "tls:chan"]);
    wait_for(SETTLE, "a subscriber", || {
        (pusher.cmd_str(&["PUBLISH", "tls:chan", "hello"]) == Frame::Integer(1)).then_some(())
    });
    assert_eq!(
        sub.read_reply(),
        Frame::Array(vec![bulk("message"), bulk("tls:chan"), bulk("hello")])
    );
    let status = status(&setup.proxy);
    for b in status["backends"].as_array().expect("backends") {
        assert_eq!(b["state"], "up", "{status}");
    }
}

/// Pool lines that give shardis `pki`'s client certificate for the backends.
fn client_cert_lines(pki: &Pki) -> String {
    format!(
        "tls_cert = {:?}\ntls_key = {:?}",
        pki.client.cert.display().to_string(),
        pki.client.key.display().to_string()
    )
}

#[test]
fn tls_on_both_sides_with_client_certificates_to_the_backends() {
    // The redis-servers require a client certificate: shardis shows the pool's.
    let pki = Pki::new();
    let pool = client_cert_lines(&pki);
    let setup = Setup::start_with(
        pki,
        Spec {
            backend_tls: Some(true),
            server_tls: Some(""),
            pool: &pool,
            ..Spec::default()
        },
    );
    let mut client = setup.tls_client();
    serve_across_shards(&setup, &mut client);

    // Without the client certificate, the same servers refuse shardis, and the client is told.
    let bare = Setup::config(
        &setup.pki,
        &setup.redis,
        &Spec {
            backend_tls: Some(true),
            pool: "failure_limit = 1",
            ..Spec::default()
        },
    );
    let bare = Shardis::start(&bare);
    let mut c = bare.client();
    let reply = wait_for(
        SETTLE,
        "an error from a backend without a certificate",
        || match c.cmd_str(&["GET", "tls:0"]) {
            Frame::Error(e) => Some(e),
            _ => None,
        },
    );
    assert!(reply.starts_with("ERR backend s"), "{reply}");
}

#[test]
fn mutual_tls_required_refuses_a_client_without_a_certificate() {
    let pki = Pki::new();
    let extra = format!("client_ca = {:?}", pki.ca.display().to_string());
    let setup = Setup::start_with(
        pki,
        Spec {
            server_tls: Some(&extra),
            backends: 1,
            ..Spec::default()
        },
    );
    let addr = setup.proxy.addr.to_string();
    // With a certificate signed by client_ca: served.
    let mut with = setup.proxy.tls_client(setup.pki.client_config(true));
    assert_eq!(with.cmd_str(&["SET", "m:a", "1"]), ok());
    // Without one: in TLS 1.3 the client's handshake may finish before the server has checked
    // it, so the refusal arrives as an alert on the first read. Either way, never a reply.
    let reply = answered(&addr, setup.pki.client_config(false), &[b"GET", b"m:a"]);
    assert!(
        reply.is_none(),
        "a client without a certificate was answered: {reply:?}"
    );
    // A certificate from another CA: refused too.
    let stranger = Pki::new();
    let reply = answered(&addr, stranger_config(&setup.pki, &stranger), &[b"PING"]);
    assert!(
        reply.is_none(),
        "a certificate of another CA was accepted: {reply:?}"
    );
    // The client that was served still is.
    assert_eq!(with.cmd_str(&["GET", "m:a"]), bulk("1"));
    let errors = wait_for(SETTLE, "handshake errors counted", || {
        let text = setup.metrics();
        metric(
            &text,
            "shardis_client_tls_handshake_errors_total{reason=\"error\"}",
        )
        .filter(|n| *n >= 2.0)
    });
    assert!(errors >= 2.0);
}

/// What a TLS client with `config` gets for `args` on `addr`: `None` when the handshake or
/// the first read fails (refused), else the reply bytes as text.
fn answered(
    addr: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
    args: &[&[u8]],
) -> Option<String> {
    let mut stream = tls_connect(addr, config, "127.0.0.1").ok()?;
    let _ = stream.write_all(&Client::encode(args));
    let _ = stream.flush();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Err(_) | Ok(0) => None,
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
    }
}

/// Client settings that trust `server`'s CA (to reach the proxy) but show `stranger`'s client
/// certificate.
fn stranger_config(server: &Pki, stranger: &Pki) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&server.ca).expect("ca") {
        roots.add(cert.expect("pem")).expect("add");
    }
    let chain = CertificateDer::pem_file_iter(&stranger.client.cert)
        .expect("cert")
        .collect::<Result<Vec<_>, _>>()
        .expect("pem");
    let key = PrivateKeyDer::from_pem_file(&stranger.client.key).expect("key");
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client cert"),
    )
}

#[test]
fn optional_client_auth_serves_clients_with_and_without_a_certificate() {
    let pki = Pki::new();
    let extra = format!(
        "client_ca = {:?}\nclient_auth = \"optional\"",
        pki.ca.display().to_string()
    );
    let setup = Setup::start_with(
        pki,
        Spec {
            server_tls: Some(&extra),
            backends: 1,
            ..Spec::default()
        },
    );
    let mut with = setup.proxy.tls_client(setup.pki.client_config(true));
    let mut without = setup.proxy.tls_client(setup.pki.client_config(false));
    assert_eq!(with.cmd_str(&["SET", "o:a", "1"]), ok());
    assert_eq!(without.cmd_str(&["GET", "o:a"]), bulk("1"));
    // A certificate that does not verify is still refused.
    let stranger = Pki::new();
    let addr = setup.proxy.addr.to_string();
    let reply = answered(&addr, stranger_config(&setup.pki, &stranger), &[b"PING"]);
    assert!(
        reply.is_none(),
        "a certificate of another CA was accepted: {reply:?}"
    );
}

#[test]
fn a_plain_client_on_the_tls_port_is_refused_cleanly_and_hurts_nobody() {
    let setup = Setup::start(Spec {
        server_tls: Some(""),
        backends: 2,
        ..Spec::default()
    });
    let mut good = setup.tls_client();
    assert_eq!(good.cmd_str(&["SET", "p:a", "1"]), ok());
    let attempts = 30;
    for i in 0..attempts {
        let mut plain = TcpStream::connect(setup.proxy.addr).expect("connect");
        // Half inline commands, half RESP, as plain clients would send.
        let request: &[u8] = if i % 2 == 0 {
            b"PING\r\n"
        } else {
            b"*1\r\n$4\r\nPING\r\n"
        };
        let _ = plain.write_all(request);
        refused(&mut plain, CLOSE_DEADLINE).unwrap_or_else(|e| panic!("attempt {i}: {e}"));
        // The TLS client is served in between.
        assert_eq!(good.cmd_str(&["INCR", "p:n"]), Frame::Integer(i + 1));
    }
    let counted = wait_for(SETTLE, "the failed handshakes counted", || {
        metric(
            &setup.metrics(),
            "shardis_client_tls_handshake_errors_total{reason=\"error\"}",
        )
        .filter(|n| *n >= attempts as f64)
    });
    assert_eq!(counted, attempts as f64);
    // One line at info level for all of them, not one each (the rest are at debug level).
    let lines = setup
        .proxy
        .stderr()
        .lines()
        .filter(|l| l.contains("TLS handshake"))
        .count();
    assert_eq!(lines, 1, "{}", setup.proxy.stderr());
    // None of them counts as a client now.
    assert_eq!(
        metric(&setup.metrics(), "shardis_client_connections"),
        Some(1.0)
    );
}

#[test]
fn plain_listen_serves_plain_clients_beside_the_tls_listener() {
    let setup = Setup::start(Spec {
        server_tls: Some(""),
        server: "plain_listen = \"127.0.0.1:0\"",
        backends: 2,
        ..Spec::default()
    });
    let plain_addr = setup.proxy.plain.expect("a plain listener reported");
    let mut plain = Client::connect(&plain_addr.to_string());
    let mut tls = setup.tls_client();
    assert_eq!(plain.cmd_str(&["SET", "pl:a", "plain"]), ok());
    assert_eq!(tls.cmd_str(&["GET", "pl:a"]), bulk("plain"));
    assert_eq!(tls.cmd_str(&["SET", "pl:b", "tls"]), ok());
    assert_eq!(plain.cmd_str(&["GET", "pl:b"]), bulk("tls"));
    // The TLS listener stays TLS only.
    let mut wrong = TcpStream::connect(setup.proxy.addr).expect("connect");
    let _ = wrong.write_all(b"PING\r\n");
    refused(&mut wrong, CLOSE_DEADLINE).expect("plain on the TLS port");
    // And the plain one speaks no TLS.
    assert!(
        tls_connect(
            &plain_addr.to_string(),
            setup.pki.client_config(false),
            "127.0.0.1"
        )
        .is_err()
    );
}

#[test]
fn a_silent_client_holds_a_client_slot_only_until_the_handshake_timeout() {
    let setup = Setup::start(Spec {
        server_tls: Some("handshake_timeout_ms = 700"),
        server: "max_clients = 1",
        backends: 1,
        ..Spec::default()
    });
    // Connects and sends nothing: it holds the only slot...
    let mut silent = TcpStream::connect(setup.proxy.addr).expect("connect");
    let started = Instant::now();
    // ... so a TLS client is told, over TLS, that the proxy is full.
    let mut second = setup.tls_client();
    second.send_raw(&Client::encode(&[b"PING"]));
    assert_eq!(
        second.read_reply(),
        Frame::Error("ERR max number of clients reached".into())
    );
    // The handshake timeout closes the silent one.
    silent
        .set_read_timeout(Some(CLOSE_DEADLINE))
        .expect("timeout");
    let mut buf = [0u8; 16];
    let read = silent.read(&mut buf);
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the silent client got {read:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(600),
        "closed after {waited:?}"
    );
    // Its slot is free again.
    let mut third = wait_for(SETTLE, "the slot to be free", || {
        let mut c = setup.tls_client();
        (c.cmd_str(&["PING"]) == Frame::Simple("PONG".into())).then_some(c)
    });
    assert_eq!(third.cmd_str(&["SET", "s:a", "1"]), ok());
    let timeouts = metric(
        &setup.metrics(),
        "shardis_client_tls_handshake_errors_total{reason=\"timeout\"}",
    );
    assert_eq!(timeouts, Some(1.0));
}

/// Starts a shardis over one TLS redis-server of `pki` with `pool` lines, and returns the
/// error its client gets once the backend is refused.
fn backend_tls_error(pool: &str) -> (Shardis, Redis, String) {
    let pki = Pki::new();
    let redis = Redis::start_tls(&pki, false);
    let config = shardis_config(
        &[("s1", redis.addr())],
        &format!("{POOL}\nfailure_limit = 2\nretry_timeout_ms = 200\n{pool}"),
    );
    let proxy = Shardis::start(&config);
    let mut client = proxy.client();
    let reply = wait_for(SETTLE, "an error reply", || {
        match client.cmd_str(&["GET", "k"]) {
            Frame::Error(e) => Some(e),
            other => panic!("expected an error, got {other:?}"),
        }
    });
    (proxy, redis, reply)
}

/// The first error a client gets from a backend whose TLS handshake fails: the handshake's
/// error (naming `what`), or, when another worker's links already marked the backend down,
/// the fail-fast "is down" (the TLS detail is then in /status, checked after).
fn assert_tls_reply(reply: &str, what: &str) {
    let tls = reply.contains("TLS handshake failed") && reply.contains(what);
    let down = reply.starts_with("ERR backend s1 (") && reply.ends_with(") is down");
    assert!(tls || down, "{reply}");
}

/// Waits until /status shows the backend down with `what` in its last error, and checks the
/// metric of TLS errors and that the log says so without a line per retry.
fn assert_down_with_tls_error(proxy: &Shardis, what: &str) {
    // failure_limit = 2 failed handshakes mark it down.
    let last = wait_for(SETTLE, "the backend marked down", || {
        let s = status(proxy);
        let b = &s["backends"][0];
        (b["state"] == "down" && b["failures"].as_u64() >= Some(2))
            .then(|| b["last_error"].as_str().unwrap_or("").to_string())
    });
    assert!(last.contains("TLS handshake failed"), "{last}");
    assert!(last.contains(what), "{last}");
    let text = http_get(proxy.admin, "/metrics").body;
    let tls_errors = metric(
        &text,
        "shardis_backend_errors_total{pool=\"main\",backend=\"s1\",kind=\"tls\"}",
    )
    .unwrap_or(0.0);
    assert!(tls_errors >= 2.0, "{text}");
    // Let it retry a few times: the log still says it once (plus the marked-down line).
    let retries = tls_errors;
    wait_for(SETTLE, "more retries", || {
        let text = http_get(proxy.admin, "/metrics").body;
        metric(
            &text,
            "shardis_backend_errors_total{pool=\"main\",backend=\"s1\",kind=\"tls\"}",
        )
        .filter(|n| *n >= retries + 3.0)
    });
    let stderr = proxy.stderr();
    let warned = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("TLS handshake failed"))
        .count();
    assert!((1..=4).contains(&warned), "{warned} warnings:\n{stderr}");
    assert!(stderr.contains("marked down after"), "{stderr}");
}

#[test]
fn a_backend_signed_by_another_ca_is_marked_down_with_a_tls_error() {
    let other = Pki::new();
    let (proxy, _redis, reply) = backend_tls_error(&other.pool_tls_lines(""));
    assert_tls_reply(&reply, "UnknownIssuer");
    assert_down_with_tls_error(&proxy, "UnknownIssuer");
}

#[test]
fn a_backend_certificate_for_another_name_is_marked_down_with_a_tls_error() {
    // The pool trusts the right CA, but expects another name than the certificate's.
    let pki = Pki::new();
    let redis = Redis::start_tls(&pki, false);
    let config = shardis_config(
        &[("s1", redis.addr())],
        &format!(
            "{POOL}\nfailure_limit = 2\nretry_timeout_ms = 200\n{}",
            pki.pool_tls_lines("tls_server_name = \"redis.other.example\"")
        ),
    );
    let proxy = Shardis::start(&config);
    let mut client = proxy.client();
    let reply = wait_for(SETTLE, "an error reply", || {
        match client.cmd_str(&["GET", "k"]) {
            Frame::Error(e) => Some(e),
            other => panic!("expected an error, got {other:?}"),
        }
    });
    assert_tls_reply(&reply, "not valid for name");
    assert_down_with_tls_error(&proxy, "not valid for name");
    drop(redis);
}

#[test]
fn insecure_skip_verify_connects_anyway_and_warns_at_start_and_on_reload() {
    let other = Pki::new();
    let pki = Pki::new();
    let redis = Redis::start_tls(&pki, false);
    let config = shardis_config(
        &[("s1", redis.addr())],
        &format!(
            "{POOL}\n{}",
            other.pool_tls_lines("tls_insecure_skip_verify = true")
        ),
    );
    let proxy = Shardis::start(&config);
    let mut client = proxy.client();
    assert_eq!(client.cmd_str(&["SET", "i:a", "1"]), ok());
    let warnings = |text: &str| {
        text.lines()
            .filter(|l| l.contains("WARN") && l.contains("tls_insecure_skip_verify"))
            .count()
    };
    assert_eq!(warnings(&proxy.stderr()), 1, "{}", proxy.stderr());
    proxy.reload(&config);
    wait_for(SETTLE, "a second warning after the reload", || {
        (warnings(&proxy.stderr()) == 2).then_some(())
    });
    assert_eq!(client.cmd_str(&["GET", "i:a"]), bulk("1"));
}

#[test]
fn a_reload_rotates_the_listener_certificate_for_new_connections() {
    let setup = Setup::start(Spec {
        server_tls: Some(""),
        backends: 1,
        ..Spec::default()
    });
    let addr = setup.proxy.addr.to_string();
    let old = certificate_der(&setup.pki.server.cert);
    assert_eq!(peer_certificate(&addr, setup.pki.client_config(false)), old);
    let mut open = setup.tls_client();
    assert_eq!(open.cmd_str(&["SET", "r:a", "1"]), ok());

    // Same paths, new files (as cert-manager or certbot renew them); the config is unchanged.
    let renewed = setup
        .pki
        .issue_server("renewed server", &["127.0.0.1", "localhost"]);
    std::fs::copy(&renewed.cert, &setup.pki.server.cert).expect("replace cert");
    std::fs::copy(&renewed.key, &setup.pki.server.key).expect("replace key");
    let new = certificate_der(&renewed.cert);
    assert_ne!(old, new);
    setup.proxy.reload(&setup.config);
    wait_for(
        SETTLE,
        "new connections to get the renewed certificate",
        || (peer_certificate(&addr, setup.pki.client_config(false)) == new).then_some(()),
    );
    // The connection opened before goes on.
    assert_eq!(open.cmd_str(&["GET", "r:a"]), bulk("1"));
    let mut fresh = setup.tls_client();
    assert_eq!(fresh.cmd_str(&["GET", "r:a"]), bulk("1"));

    // A key that does not go with the certificate: the reload is refused, naming the files,
    // and the certificate in force stays.
    let stray = setup.pki.issue_server("stray", &["127.0.0.1"]);
    std::fs::copy(&stray.key, &setup.pki.server.key).expect("replace key");
    let reply = http_request(setup.proxy.admin, "POST", "/admin/reload", b"");
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("server.tls.key"), "{}", reply.body);
    assert_eq!(peer_certificate(&addr, setup.pki.client_config(false)), new);
}

#[test]
fn a_reload_with_new_backend_tls_files_rebuilds_the_backends() {
    let setup = Setup::start(Spec {
        backend_tls: Some(false),
        backends: 2,
        ..Spec::default()
    });
    let mut client = setup.proxy.client();
    assert_eq!(client.cmd_str(&["SET", "b:a", "1"]), ok());
    // Nothing changed: the backends are kept.
    let reply = http_request(setup.proxy.admin, "POST", "/admin/reload", b"").json();
    assert_eq!(
        reply["changes"]["kept"],
        serde_json::json!(["s1", "s2"]),
        "{reply}"
    );
    // The CA file is rewritten (a bundle with one more CA): every backend is rebuilt.
    let extra = Pki::new();
    let mut bundle = std::fs::read(&setup.pki.ca).expect("read ca");
    bundle.extend(std::fs::read(&extra.ca).expect("read other ca"));
    std::fs::write(&setup.pki.ca, bundle).expect("write bundle");
    let reply = http_request(setup.proxy.admin, "POST", "/admin/reload", b"").json();
    assert_eq!(
        reply["changes"]["changed"],
        serde_json::json!(["s1", "s2"]),
        "{reply}"
    );
    wait_for(SETTLE, "the rebuilt backends to serve", || {
        (client.cmd_str(&["GET", "b:a"]) == bulk("1")).then_some(())
    });
}

#[test]
fn the_redis_crate_over_tls_both_ways() {
    let pki = Pki::new();
    let pool = client_cert_lines(&pki);
    let extra = format!("client_ca = {:?}", pki.ca.display().to_string());
    let setup = Setup::start_with(
        pki,
        Spec {
            backend_tls: Some(true),
            server_tls: Some(&extra),
            pool: &pool,
            ..Spec::default()
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let certs = redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: std::fs::read(&setup.pki.client.cert).expect("cert"),
                client_key: std::fs::read(&setup.pki.client.key).expect("key"),
            }),
            root_cert: Some(std::fs::read(&setup.pki.ca).expect("ca")),
        };
        let url = format!("rediss://127.0.0.1:{}/", setup.proxy.addr.port());
        let client = redis::Client::build_with_tls(url, certs).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect over TLS");
        let keys: Vec<String> = (0..20).map(|i| format!("rc:{i}")).collect();
        for (i, k) in keys.iter().enumerate() {
            let () = redis::cmd("SET")
                .arg(k)
                .arg(i)
                .query_async(&mut conn)
                .await
                .expect("SET");
        }
        let values: Vec<usize> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .expect("MGET");
        assert_eq!(values, (0..20).collect::<Vec<_>>());
        // A pipeline of many commands, answered in order.
        let mut pipe = redis::pipe();
        for i in 0..200 {
            pipe.cmd("INCR").arg(format!("rc:n:{}", i % 5));
        }
        let counts: Vec<i64> = pipe.query_async(&mut conn).await.expect("pipeline");
        assert_eq!(counts.len(), 200);
        assert_eq!(counts.iter().filter(|&&n| n == 40).count(), 5);
    });
}

#[test]
fn a_tokio_rustls_client_with_a_large_pipeline() {
    let pki = Pki::new();
    let setup = Setup::start_with(
        pki,
        Spec {
            backend_tls: Some(false),
            server_tls: Some(""),
            ..Spec::default()
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(setup.proxy.addr)
            .await
            .expect("connect");
        let connector = tokio_rustls::TlsConnector::from(setup.pki.client_config(false));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut tls = connector.connect(name, tcp).await.expect("handshake");
        // 20,000 SETs written at once, then every reply read: the client never reads while it
        // writes, so shardis must read ahead through the relay.
        let n = 20_000;
        let mut request = Vec::new();
        for i in 0..n {
            request.extend(Client::encode(&[
                b"SET",
                format!("tr:{i}").as_bytes(),
                format!("value-{i}").as_bytes(),
            ]));
        }
        let (mut rx, mut tx) = tokio::io::split(tls);
        let writer = async move {
            tx.write_all(&request).await.expect("write pipeline");
            tx.flush().await.expect("flush");
            tx
        };
        let reader = async move {
            let expected = b"+OK\r\n".len() * n;
            let mut got = Vec::with_capacity(expected);
            let mut buf = vec![0u8; 64 * 1024];
            while got.len() < expected {
                let read = rx.read(&mut buf).await.expect("read replies");
                assert!(read > 0, "closed after {} bytes", got.len());
                got.extend_from_slice(&buf[..read]);
            }
            assert!(got.chunks(5).all(|c| c == b"+OK\r\n"));
            rx
        };
        let (tx, rx) = tokio::join!(writer, reader);
        tls = rx.unsplit(tx);
        tls.shutdown().await.expect("close_notify");
    });
    let mut client = setup.tls_client();
    assert_eq!(client.cmd_str(&["GET", "tr:19999"]), bulk("value-19999"));
}

#[test]
fn check_and_admin_config_name_the_files_but_never_show_the_key() {
    let pki = Pki::new();
    let extra = format!("client_ca = {:?}", pki.ca.display().to_string());
    let config = with_server_tls(
        &shardis_config(
            &[("s1", "127.0.0.1:7001".to_string())],
            &format!(
                "{POOL}\n{}\n{}",
                pki.pool_tls_lines("tls_insecure_skip_verify = true"),
                client_cert_lines(&pki)
            ),
        ),
        &pki.server_tls_section(&extra),
    );
    let path = pki.dir().join("shardis.toml");
    std::fs::write(&path, &config).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run shardis check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    let key = std::fs::read_to_string(&pki.server.key).expect("read key");
    let secret = key.lines().nth(1).expect("a base64 line");
    let client_key = std::fs::read_to_string(&pki.client.key).expect("read key");
    let client_secret = client_key.lines().nth(1).expect("a base64 line");
    assert!(
        stdout.contains(&pki.server.key.display().to_string()),
        "{stdout}"
    );
    assert!(
        stdout.contains("client_auth            required"),
        "{stdout}"
    );
    assert!(
        stdout.contains("tls_insecure_skip_verify = true"),
        "no warning: {stdout}"
    );
    let admin_config = {
        let proxy = Shardis::start(&config);
        http_get(proxy.admin, "/admin/config").body
    };
    for shown in [&stdout, &admin_config] {
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains(client_secret), "{shown}");
    }
    assert!(
        admin_config.contains(&pki.client.key.display().to_string()),
        "{admin_config}"
    );

    // A broken file: every problem, by key, exit 1.
    std::fs::write(&pki.server.key, "not a key\n").expect("break the key");
    std::fs::remove_file(&pki.client.cert).expect("remove the client cert");
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run shardis check");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr.contains("server.tls.key: "), "{stderr}");
    assert!(
        stderr.contains("pools[0].tls_cert: cannot read "),
        "{stderr}"
    );
}
