//! The engine the proxy drives: a bounded pool of blocking threads, each running one script
//! on a Lua state taken from a pool; `redis.call` hands its command to the async side through
//! a channel and blocks on the reply, so the proxy's worker keeps serving meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};

use super::function::{self, flags};
use super::run::{self, Params, Target};
use super::state::State;
use super::{Call, CallError, Command, Dispatch, Protocol, api, sha1hex};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Scripts running at once (each holds a blocking thread while it runs).
    pub max_running: usize,
    /// Idle Lua states kept for reuse.
    pub max_idle_states: usize,
    /// Bytes one Lua state may allocate.
    pub memory_limit: usize,
    /// `script_timeout_ms`: past it a script is stopped (0: never).
    pub timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_running: 64,
            max_idle_states: 16,
            memory_limit: super::state::DEFAULT_MEMORY_LIMIT,
            timeout: Duration::from_millis(5000),
        }
    }
}

/// One call to run: EVAL, EVALSHA (and their `_RO`) or FCALL (`_RO`).
#[derive(Debug, Clone)]
pub struct Invocation {
    pub what: What,
    pub keys: Vec<Bytes>,
    pub args: Vec<Bytes>,
    /// The `_RO` variant.
    pub read_only: bool,
    /// The calling client's protocol (how the script's return value is rendered).
    pub client: Protocol,
}

/// What an [`Invocation`] runs.
#[derive(Debug, Clone)]
pub enum What {
    Eval(Bytes),
    EvalSha(String),
    Fcall(String),
}

impl Invocation {
    /// Reads `EVAL script numkeys key... arg...` (any of EVAL, EVALSHA, EVAL_RO, EVALSHA_RO,
    /// FCALL, FCALL_RO; the name included) as Redis does. Errors are RESP error replies.
    pub fn parse(argv: &[Bytes], client: Protocol) -> Result<Invocation, Bytes> {
        let err = |m: &str| Bytes::from(format!("-{m}\r\n"));
        let name = argv.first().map(|n| n.to_ascii_lowercase()).unwrap_or_default();
        if argv.len() < 3 {
            return Err(err(&format!(
                "ERR wrong number of arguments for '{}' command",
                String::from_utf8_lossy(&name)
            )));
        }
        let numkeys: i64 = std::str::from_utf8(&argv[2])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err("ERR value is not an integer or out of range"))?;
        let rest = argv.len() as i64 - 3;
        if numkeys > rest {
            return Err(err("ERR Number of keys can't be greater than number of args"));
        }
        if numkeys < 0 {
            return Err(err("ERR Number of keys can't be negative"));
        }
        let split = 3 + numkeys as usize;
        let what = match name.as_slice() {
            b"eval" | b"eval_ro" => What::Eval(argv[1].clone()),
            b"evalsha" | b"evalsha_ro" => What::EvalSha(String::from_utf8_lossy(&argv[1]).to_ascii_lowercase()),
            _ => What::Fcall(String::from_utf8_lossy(&argv[1]).into_owned()),
        };
        Ok(Invocation {
            what,
            keys: argv[3..split].to_vec(),
            args: argv[split..].to_vec(),
            read_only: name.ends_with(b"_ro"),
            client,
        })
    }
}

/// A library loaded with FUNCTION LOAD.
#[derive(Debug)]
struct Library {
    code: Bytes,
    /// Function name -> flags.
    functions: HashMap<String, u32>,
}

/// A running script, for SCRIPT KILL and FUNCTION KILL.
struct Running {
    eval: bool,
    kill: Arc<AtomicBool>,
    wrote: Arc<AtomicBool>,
}

struct Inner {
    config: EngineConfig,
    permits: Semaphore,
    idle: Mutex<Vec<Pooled>>,
    rand: AtomicU64,
    scripts: RwLock<HashMap<String, Bytes>>,
    libraries: RwLock<HashMap<String, Arc<Library>>>,
    /// Bumped by every FUNCTION LOAD/DELETE/FLUSH: a state loaded before reloads.
    generation: AtomicU64,
    running: Mutex<HashMap<u64, Running>>,
    next_id: AtomicU64,
}

/// A pooled state and the libraries loaded into it.
struct Pooled {
    state: State,
    generation: u64,
    functions: HashMap<String, (std::ffi::c_int, u32)>,
}

/// The script engine. Cheap to clone; all clones share the pools and caches.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// A request from a script's thread to the async side.
struct Request {
    command: Command,
    reply: std::sync::mpsc::SyncSender<Result<Bytes, CallError>>,
}

/// [`Call`] through the channel to the async side.
struct ChannelCall {
    tx: mpsc::Sender<Request>,
    reply_tx: std::sync::mpsc::SyncSender<Result<Bytes, CallError>>,
    reply_rx: std::sync::mpsc::Receiver<Result<Bytes, CallError>>,
}

impl Call for ChannelCall {
    fn call(&mut self, args: Vec<Vec<u8>>, protocol: Protocol, deadline: Option<Instant>) -> Result<Bytes, CallError> {
        let req = Request {
            command: Command { args, protocol },
            reply: self.reply_tx.clone(),
        };
        self.tx
            .blocking_send(req)
            .map_err(|_| CallError::Failed("ERR the proxy stopped serving this script".into()))?;
        match deadline {
            None => self.reply_rx.recv().map_err(|_| CallError::Failed("ERR the proxy dropped the call".into()))?,
            Some(d) => match self.reply_rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(r) => r,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(CallError::Timeout),
                Err(_) => Err(CallError::Failed("ERR the proxy dropped the call".into())),
            },
        }
    }
}

fn error_bytes(msg: &str) -> Bytes {
    Bytes::from(format!("-{msg}\r\n"))
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                permits: Semaphore::new(config.max_running.max(1)),
                config,
                idle: Mutex::new(Vec::new()),
                rand: AtomicU64::new(api::RAND_INIT),
                scripts: RwLock::new(HashMap::new()),
                libraries: RwLock::new(HashMap::new()),
                generation: AtomicU64::new(0),
                running: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// SCRIPT LOAD: keeps the body for EVALSHA and returns its sha.
    pub fn load_script(&self, body: Bytes) -> String {
        let sha = sha1hex(&body);
        if let Ok(mut m) = self.inner.scripts.write() {
            m.entry(sha.clone()).or_insert(body);
        }
        sha
    }

    /// SCRIPT EXISTS for one sha.
    pub fn script_exists(&self, sha: &str) -> bool {
        self.inner.scripts.read().is_ok_and(|m| m.contains_key(&sha.to_ascii_lowercase()))
    }

    /// SCRIPT FLUSH.
    pub fn flush_scripts(&self) {
        if let Ok(mut m) = self.inner.scripts.write() {
            m.clear();
        }
    }

    /// FUNCTION LOAD [REPLACE]: checks the library by running its body on a fresh state; on
    /// success keeps it and returns its name. Errors are Redis's texts (without `-`).
    pub async fn load_library(&self, payload: Bytes, replace: bool) -> Result<String, String> {
        let meta = function::parse_library(&payload).map_err(|e| format!("ERR {e}"))?;
        if !replace && self.inner.libraries.read().is_ok_and(|m| m.contains_key(&meta.name)) {
            return Err(format!("ERR Library '{}' already exists", meta.name));
        }
        let limit = self.inner.config.memory_limit;
        let code = payload.slice(meta.code_start..);
        let checked = tokio::task::spawn_blocking(move || {
            let mut st = State::new(limit).ok_or_else(|| "ERR Lua state could not be created".to_string())?;
            let mut refuse = Refuse;
            let regs = run::load_library(&mut st, &code, &mut refuse, Instant::now() + Duration::from_millis(500))
                .map_err(|e| format!("ERR {e}"))?;
            Ok::<_, String>((code, regs.functions.into_iter().map(|f| (f.name, f.flags)).collect::<HashMap<_, _>>()))
        })
        .await
        .map_err(|_| "ERR script engine failure".to_string())??;
        let (code, functions) = checked;
        let mut libs = self.inner.libraries.write().map_err(|_| "ERR script engine failure".to_string())?;
        for (name, lib) in libs.iter() {
            if *name == meta.name {
                continue;
            }
            if let Some(f) = functions.keys().find(|f| lib.functions.contains_key(*f)) {
                return Err(format!("ERR Function {f} already exists"));
            }
        }
        if !replace && libs.contains_key(&meta.name) {
            return Err(format!("ERR Library '{}' already exists", meta.name));
        }
        libs.insert(meta.name.clone(), Arc::new(Library { code, functions }));
        self.inner.generation.fetch_add(1, Ordering::Relaxed);
        Ok(meta.name)
    }

    /// FUNCTION DELETE; false when there is no such library.
    pub fn delete_library(&self, name: &str) -> bool {
        let removed = self.inner.libraries.write().is_ok_and(|mut m| m.remove(name).is_some());
        if removed {
            self.inner.generation.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    /// FUNCTION FLUSH.
    pub fn flush_libraries(&self) {
        if let Ok(mut m) = self.inner.libraries.write() {
            m.clear();
        }
        self.inner.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// SCRIPT KILL (`eval`) or FUNCTION KILL: stops the running scripts of that kind that did
    /// not write. Returns the RESP reply Redis gives.
    pub fn kill(&self, eval: bool) -> &'static [u8] {
        let Ok(running) = self.inner.running.lock() else {
            return b"-ERR script engine failure\r\n";
        };
        let (mine, other): (Vec<&Running>, Vec<&Running>) = running.values().partition(|r| r.eval == eval);
        if mine.is_empty() {
            return match (other.is_empty(), eval) {
                (true, _) => b"-NOTBUSY No scripts in execution right now.\r\n",
                (false, true) => b"-BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.\r\n",
                (false, false) => b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n",
            };
        }
        let mut killed = false;
        for r in mine {
            if !r.wrote.load(Ordering::Relaxed) {
                r.kill.store(true, Ordering::Relaxed);
                killed = true;
            }
        }
        if killed {
            b"+OK\r\n"
        } else {
            b"-UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.\r\n"
        }
    }

    /// Scripts running now.
    pub fn running(&self) -> usize {
        self.inner.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Runs `inv`, sending each `redis.call` to `dispatch`, and returns the reply (a RESP
    /// frame in the client's protocol; errors are error frames).
    pub async fn run<D: Dispatch>(&self, inv: Invocation, dispatch: &D) -> Bytes {
        let body = match &inv.what {
            What::Eval(body) => Some(body.clone()),
            What::EvalSha(sha) => match self.inner.scripts.read().ok().and_then(|m| m.get(sha).cloned()) {
                Some(b) => Some(b),
                None => return error_bytes("NOSCRIPT No matching script. Please use EVAL."),
            },
            What::Fcall(_) => None,
        };
        let library = match &inv.what {
            What::Fcall(name) => match self.find_function(name) {
                Some(lib) => Some(lib),
                None => return error_bytes("ERR Function not found"),
            },
            _ => None,
        };
        let Ok(_permit) = self.inner.permits.acquire().await else {
            return error_bytes("ERR script engine stopped");
        };
        let (tx, mut rx) = mpsc::channel::<Request>(1);
        let (reply_tx, reply_rx) = std::sync::mpsc::sync_channel(1);
        let call = ChannelCall { tx, reply_tx, reply_rx };
        let engine = self.clone();
        let handle = tokio::task::spawn_blocking(move || engine.execute(inv, body, library, call));
        tokio::pin!(handle);
        loop {
            tokio::select! {
                done = &mut handle => {
                    return done.unwrap_or_else(|_| error_bytes("ERR script engine failure"));
                }
                Some(req) = rx.recv() => {
                    // A script stopped by its deadline does not wait for its last call: the
                    // call's future is dropped (Dispatch implementations are cancel-safe).
                    tokio::select! {
                        reply = dispatch.call(req.command) => {
                            let _ = req.reply.send(reply);
                        }
                        done = &mut handle => {
                            return done.unwrap_or_else(|_| error_bytes("ERR script engine failure"));
                        }
                    }
                }
            }
        }
    }

    /// Runs `inv` on the current thread (it blocks), with `call` serving `redis.call`.
    pub fn run_blocking(&self, inv: Invocation, call: &mut dyn Call) -> Bytes {
        let body = match &inv.what {
            What::Eval(body) => Some(body.clone()),
            What::EvalSha(sha) => match self.inner.scripts.read().ok().and_then(|m| m.get(sha).cloned()) {
                Some(b) => Some(b),
                None => return error_bytes("NOSCRIPT No matching script. Please use EVAL."),
            },
            What::Fcall(_) => None,
        };
        let library = match &inv.what {
            What::Fcall(name) => match self.find_function(name) {
                Some(lib) => Some(lib),
                None => return error_bytes("ERR Function not found"),
            },
            _ => None,
        };
        self.execute(inv, body, library, Borrowed(call))
    }

    fn find_function(&self, name: &str) -> Option<(String, Arc<Library>)> {
        let libs = self.inner.libraries.read().ok()?;
        libs.iter().find(|(_, l)| l.functions.contains_key(name)).map(|(n, l)| (n.clone(), l.clone()))
    }

    fn take_state(&self) -> Option<Pooled> {
        let pooled = self.inner.idle.lock().ok().and_then(|mut v| v.pop());
        let generation = self.inner.generation.load(Ordering::Relaxed);
        match pooled {
            Some(p) if p.generation == generation || p.functions.is_empty() => Some(Pooled { generation, ..p }),
            _ => State::new(self.inner.config.memory_limit).map(|state| Pooled {
                state,
                generation,
                functions: HashMap::new(),
            }),
        }
    }

    fn give_back(&self, p: Pooled) {
        if let Ok(mut idle) = self.inner.idle.lock()
            && idle.len() < self.inner.config.max_idle_states
        {
            idle.push(p);
        }
    }

    fn execute(
        &self,
        inv: Invocation,
        body: Option<Bytes>,
        library: Option<(String, Arc<Library>)>,
        mut call: impl Call,
    ) -> Bytes {
        let Some(mut pooled) = self.take_state() else {
            return error_bytes("ERR Lua state could not be created");
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let kill = Arc::new(AtomicBool::new(false));
        let wrote = Arc::new(AtomicBool::new(false));
        if let Ok(mut r) = self.inner.running.lock() {
            r.insert(id, Running { eval: body.is_some(), kill: kill.clone(), wrote: wrote.clone() });
        }
        let timeout = self.inner.config.timeout;
        let params = Params {
            keys: &inv.keys,
            args: &inv.args,
            ro: inv.read_only,
            client: inv.client,
            deadline: (!timeout.is_zero()).then(|| Instant::now() + timeout),
            timeout_ms: timeout.as_millis() as u64,
            kill: &kill,
            wrote: &wrote,
            rand: &self.inner.rand,
        };
        let reply = match (&body, &inv.what, &library) {
            (Some(body), _, _) => {
                let sha = sha1hex(body);
                let reply = run::run(&mut pooled.state, &Target::Script { body, sha: &sha }, &params, &mut call);
                if !reply.starts_with(b"-ERR Error compiling") {
                    if let Ok(mut m) = self.inner.scripts.write() {
                        m.entry(sha).or_insert_with(|| body.clone());
                    }
                }
                reply
            }
            (None, What::Fcall(name), Some((_, lib))) => self.call_function(&mut pooled, name, lib, &params, &mut call),
            _ => b"-ERR Function not found\r\n".to_vec(),
        };
        if let Ok(mut r) = self.inner.running.lock() {
            r.remove(&id);
        }
        if !pooled.state.alloc.exceeded {
            self.give_back(pooled);
        }
        Bytes::from(reply)
    }

    fn call_function(&self, pooled: &mut Pooled, name: &str, lib: &Library, params: &Params<'_>, call: &mut dyn Call) -> Vec<u8> {
        if !pooled.functions.contains_key(name) {
            let mut refuse = Refuse;
            match run::load_library(&mut pooled.state, &lib.code, &mut refuse, Instant::now() + Duration::from_millis(500)) {
                Ok(regs) => {
                    for f in regs.functions {
                        pooled.functions.insert(f.name, (f.func_ref, f.flags));
                    }
                }
                Err(e) => return format!("-ERR {e}\r\n").into_bytes(),
            }
        }
        let Some(&(func_ref, fl)) = pooled.functions.get(name) else {
            return b"-ERR Function not found\r\n".to_vec();
        };
        let _ = flags::NO_WRITES;
        run::run(&mut pooled.state, &Target::Function { name, func_ref, flags: fl }, params, call)
    }
}

/// A borrowed [`Call`].
struct Borrowed<'a>(&'a mut dyn Call);

impl Call for Borrowed<'_> {
    fn call(&mut self, args: Vec<Vec<u8>>, protocol: Protocol, deadline: Option<Instant>) -> Result<Bytes, CallError> {
        self.0.call(args, protocol, deadline)
    }

    fn acl_check(&self, args: &[Vec<u8>]) -> bool {
        self.0.acl_check(args)
    }
}

/// The [`Call`] of a library body at load time, which may not call Redis.
struct Refuse;

impl Call for Refuse {
    fn call(&mut self, _: Vec<Vec<u8>>, _: Protocol, _: Option<Instant>) -> Result<Bytes, CallError> {
        Err(CallError::Failed("ERR redis.call is not allowed while loading a library".into()))
    }
}
