//! `[server] max_clients`: a connection beyond the limit gets Redis' own refusal
//! (`-ERR max number of clients reached`) and is closed; the clients within it are unaffected,
//! and a freed place can be taken again.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::ops::{backends, http_get, must_metric, start_redises, wait_for, with_server};
use common::{Client, Frame, Shardis, shardis_config};

const REFUSAL: &[u8] = b"-ERR max number of clients reached\r\n";

/// Everything a fresh connection receives before the proxy closes it, without sending anything.
fn refusal(shardis: &Shardis) -> Vec<u8> {
    let mut s = TcpStream::connect(shardis.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set_read_timeout");
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("the refused connection is closed");
    got
}

/// A connection that answers PING, or `None` if the proxy refused it (with the refusal, or any
/// read error: this helper polls for a free place, it does not judge the refusal).
fn admitted(shardis: &Shardis) -> Option<Client> {
    let mut stream = TcpStream::connect(shardis.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set_read_timeout");
    stream.write_all(b"PING\r\n").ok()?;
    let mut head = [0u8; 7];
    match stream.read_exact(&mut head) {
        Ok(()) if &head == b"+PONG\r\n" => Some(Client::from_stream(stream)),
        Ok(()) if REFUSAL.starts_with(&head) => None,
        Ok(()) => panic!("unexpected reply {head:?}"),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => panic!("no answer: {e}"),
        Err(_) => None,
    }
}

#[test]
fn connections_beyond_max_clients_are_refused_with_an_error() {
    let redises = start_redises(2);
    let config = with_server(&shardis_config(&backends(&redises), ""), "max_clients = 2");
    let shardis = Shardis::start(&config);
    let mut a = shardis.client();
    let mut b = shardis.client();
    for c in [&mut a, &mut b] {
        assert_eq!(c.cmd_str(&["PING"]), Frame::Simple("PONG".into()));
    }

    for _ in 0..3 {
        assert_eq!(refusal(&shardis), REFUSAL);
    }
    // The two admitted clients work; the refused ones were never counted.
    assert_eq!(a.cmd_str(&["SET", "k", "v"]), Frame::Simple("OK".into()));
    assert_eq!(b.cmd_str(&["GET", "k"]), Frame::Bulk(b"v".to_vec()));
    let metrics = http_get(shardis.admin, "/metrics").body;
    assert_eq!(must_metric(&metrics, "shardis_client_connections"), 2.0);
    assert_eq!(
        must_metric(&metrics, "shardis_client_connections_total"),
        2.0
    );

    // A freed place is taken by the next client (the proxy notices the close asynchronously).
    drop(a);
    let mut c = wait_for(Duration::from_secs(10), "a place to free up", || {
        admitted(&shardis)
    });
    assert_eq!(c.cmd_str(&["GET", "k"]), Frame::Bulk(b"v".to_vec()));
    assert_eq!(refusal(&shardis), REFUSAL, "the limit still holds");
}

/// A refused client that has already sent a command still reads the refusal: closing a socket
/// with unread input resets it, and a reset can discard the refusal before the client reads it,
/// so the proxy reads what the client sent before closing.
#[test]
fn a_refused_client_that_already_sent_a_command_still_reads_why() {
    let redises = start_redises(1);
    let config = with_server(&shardis_config(&backends(&redises), ""), "max_clients = 1");
    let shardis = Shardis::start(&config);
    let mut admitted = shardis.client();
    assert_eq!(admitted.cmd_str(&["PING"]), Frame::Simple("PONG".into()));

    for attempt in 0..20 {
        let mut s = TcpStream::connect(shardis.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set_read_timeout");
        // Sent before the proxy has even accepted the connection, as a pipelining client does.
        s.write_all(&Client::encode(&[b"SET", b"k", &[b'v'; 4096]]))
            .expect("write");
        // Give the refusal (and, without the fix, the reset) time to arrive before reading.
        std::thread::sleep(Duration::from_millis(20));
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Ok(_) => assert_eq!(got, REFUSAL, "attempt {attempt}"),
            Err(e) => panic!("attempt {attempt}: {e} after {got:?}"),
        }
    }
    assert_eq!(admitted.cmd_str(&["PING"]), Frame::Simple("PONG".into()));
}
