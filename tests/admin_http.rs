//! The admin HTTP server over real sockets: every endpoint, bad requests, readiness while
//! draining and in strict mode, and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use shardis::admin::serve;
use shardis::backend::BackendState;
use shardis::metrics::{Metrics, builder, describe};
use shardis::state::ProxyState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Admin {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

async fn start(prometheus: Option<PrometheusHandle>) -> Admin {
    let backends = vec![
        Arc::new(BackendState::new("s1", "127.0.0.1:7001")),
        Arc::new(BackendState::new("s2", "127.0.0.1:7002")),
    ];
    let state = Arc::new(ProxyState::new("digest-1".into(), backends));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state.clone(), prometheus, async move {
        let _ = stopped.await;
    }));
    Admin {
        addr,
        state,
        stop: Some(stop),
        task,
    }
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

async fn send(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    assert!(head.contains("\r\nConnection: close"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, body.len());
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await
}

#[tokio::test]
async fn health_readiness_and_status() {
    let admin = start(None).await;
    let addr = admin.addr;

    let r = get(addr, "/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

    let r = get(addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        "not ready\ndown: s1 (127.0.0.1:7001)\ndown: s2 (127.0.0.1:7002)\n"
    );

    admin.state.set_ready();
    // Listening is not working: with no backend up the proxy cannot serve.
    let r = get(addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(
        r.body.starts_with("not ready: no backend is up\n"),
        "{}",
        r.body
    );
    admin.state.backends()[1].connection_opened();
    let r = get(addr, "/readyz").await;
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("ready\ndown: s1 (127.0.0.1:7001)\n"));
    let r = get(addr, "/readyz?strict=1").await;
    assert_eq!(r.status, 503);
    assert!(r.body.starts_with("not ready: 1 of 2 backends down\n"));

    admin
        .state
        .clients
        .insert(shardis::state::Clients::detached(1));
    admin.state.add_commands(5);
    let r = get(addr, "/status").await;
    assert_eq!(r.status, 200);
    assert!(r.head.contains("Content-Type: application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["config_digest"], "digest-1");
    assert_eq!(v["clients"], 1);
    assert_eq!(v["commands"], 5);
    assert!(v["uptime_seconds"].is_u64());
    let backends = v["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2);
    assert_eq!(backends[0]["state"], "connecting");
    assert_eq!(backends[1]["name"], "s2");
    assert_eq!(backends[1]["address"], "127.0.0.1:7002");
    assert_eq!(backends[1]["state"], "up");
    assert_eq!(backends[1]["connections"], 1);
    assert_eq!(backends[1]["inflight"], 0);
    assert!(backends[1]["last_error"].is_null());

    admin.state.set_draining();
    let r = get(addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.body.starts_with("draining\n"));
    // Draining does not make the process unhealthy.
    assert_eq!(get(addr, "/healthz").await.status, 200);

    // Without a Prometheus handle there is nothing to scrape.
    assert_eq!(get(addr, "/metrics").await.status, 404);
    stop(admin).await;
}

#[tokio::test]
async fn metrics_endpoint_renders_the_recorder() {
    let recorder = builder().unwrap().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        describe();
        let m = Metrics::new(&["get"]);
        let _s1 = shardis::metrics::BackendMetrics::new("s1");
        m.command(0).record(Duration::from_micros(150), true);
        m.clients().connected();
    });
    let admin = start(Some(handle)).await;
    let r = get(admin.addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.head.contains("Content-Type: text/plain; version=0.0.4"));
    assert!(r.body.contains("# HELP shardis_commands_total "));
    assert!(
        r.body
            .contains("shardis_commands_total{command=\"get\",result=\"ok\"} 1\n")
    );
    assert!(r.body.contains("shardis_backend_up{backend=\"s1\"} 0\n"));
    stop(admin).await;
}

#[tokio::test]
async fn bad_requests_get_4xx() {
    let admin = start(None).await;
    let addr = admin.addr;

    assert_eq!(get(addr, "/nope").await.status, 404);
    let r = send(addr, b"POST /status HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(r.status, 405);
    assert!(r.head.contains("\r\nAllow: GET"));
    assert_eq!(
        send(addr, b"HEAD /healthz HTTP/1.1\r\n\r\n").await.status,
        405
    );

    for garbage in [
        &b"hello\r\n\r\n"[..],
        b"GET /healthz\r\n\r\n",
        b"GET healthz HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ] {
        assert_eq!(send(addr, garbage).await.status, 400, "{garbage:?}");
    }

    let mut big = b"GET /healthz HTTP/1.1\r\n".to_vec();
    for i in 0..1000 {
        big.extend_from_slice(format!("X-Filler-{i}: aaaaaaaaaa\r\n").as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    assert_eq!(send(addr, &big).await.status, 431);

    // A client that connects and leaves gets nothing and does not disturb the server.
    drop(TcpStream::connect(addr).await.unwrap());
    assert_eq!(get(addr, "/healthz").await.status, 200);
    stop(admin).await;
}

async fn stop(mut admin: Admin) {
    if let Some(stop) = admin.stop.take() {
        let _ = stop.send(());
    }
    tokio::time::timeout(Duration::from_secs(5), &mut admin.task)
        .await
        .expect("serve returns after shutdown")
        .unwrap();
    // The listener is closed once serve has returned.
    assert!(TcpStream::connect(admin.addr).await.is_err());
}
