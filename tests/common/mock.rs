//! Mock backends, only for faults a real redis-server cannot produce: one that accepts and never
//! answers, one that answers with bytes that are not RESP.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A mock backend: accepts connections and holds them open; `reply` (if any) is written back
/// for every read.
pub struct Mock {
    /// "127.0.0.1:port".
    pub addr: String,
    _conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Mock {
    /// Starts listening on a free port; `None` never answers, `Some(bytes)` answers every read
    /// with `bytes`.
    pub fn start(reply: Option<&'static [u8]>) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mock");
        let addr = listener.local_addr().expect("mock addr").to_string();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let held = conns.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                if let Some(reply) = reply {
                    let mut s = stream.try_clone().expect("clone mock stream");
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = s.read(&mut buf) {
                            if n == 0 || s.write_all(reply).is_err() {
                                return;
                            }
                        }
                    });
                }
                let _ = stream.set_nodelay(true);
                held.lock().expect("mock lock").push(stream);
            }
        });
        Mock {
            addr,
            _conns: conns,
        }
    }
}
