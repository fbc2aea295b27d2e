//! The engine the proxy drives: a bounded pool of blocking threads, each running one script
//! on a Lua state taken from a pool; `redis.call` hands its command to the async side through
//! a channel and blocks on the reply, so the proxy's worker keeps serving meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};

use super::bridge::{Borrowed, ChannelCall, Refuse, Request};
use super::function::{self, flags};
use super::invocation::{Invocation, What};
use super::random::RAND_INIT;
use super::run::{self, Params, Target};
use super::state::State;
use super::{Call, Dispatch, sha1hex};

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
    /// `script_timeout_ms` in force (a reload may change it; 0: never).
    timeout_ms: AtomicU64,
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

fn error_bytes(msg: &str) -> Bytes {
    Bytes::from(format!("-{msg}\r\n"))
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        let timeout_ms = config.timeout.as_millis() as u64;
        Engine {
            inner: Arc::new(Inner {
                permits: Semaphore::new(config.max_running.max(1)),
                config,
                idle: Mutex::new(Vec::new()),
                rand: AtomicU64::new(RAND_INIT),
                scripts: RwLock::new(HashMap::new()),
                libraries: RwLock::new(HashMap::new()),
                generation: AtomicU64::new(0),
                running: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                timeout_ms: AtomicU64::new(timeout_ms),
            }),
        }
    }

    /// Changes `script_timeout_ms` for the scripts that start from now on.
    pub fn set_timeout(&self, timeout: Duration) {
        self.inner
            .timeout_ms
            .store(timeout.as_millis() as u64, Ordering::Relaxed);
    }

    /// The number of scripts SCRIPT LOAD and EVAL have cached.
    pub fn cached_scripts(&self) -> usize {
        self.inner.scripts.read().map(|m| m.len()).unwrap_or(0)
    }

    /// The body of a cached script.
    pub fn script(&self, sha: &str) -> Option<Bytes> {
        self.inner
            .scripts
            .read()
            .ok()
            .and_then(|m| m.get(&sha.to_ascii_lowercase()).cloned())
    }

    /// Whether a function of that name is loaded.
    pub fn has_function(&self, name: &str) -> bool {
        self.find_function(name).is_some()
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
        self.inner
            .scripts
            .read()
            .is_ok_and(|m| m.contains_key(&sha.to_ascii_lowercase()))
    }

    /// SCRIPT FLUSH.
    pub fn flush_scripts(&self) {
        if let Ok(mut m) = self.inner.scripts.write() {
            m.clear();
        }
        // Idle states hold the compiled scripts: drop them too.
        if let Ok(mut idle) = self.inner.idle.lock() {
            idle.clear();
        }
    }

    /// FUNCTION LOAD [REPLACE]: checks the library by running its body on a fresh state; on
    /// success keeps it and returns its name. Errors are Redis's texts (without `-`).
    pub async fn load_library(&self, payload: Bytes, replace: bool) -> Result<String, String> {
        let meta = function::parse_library(&payload).map_err(|e| format!("ERR {e}"))?;
        if !replace
            && self
                .inner
                .libraries
                .read()
                .is_ok_and(|m| m.contains_key(&meta.name))
        {
            return Err(format!("ERR Library '{}' already exists", meta.name));
        }
        let limit = self.inner.config.memory_limit;
        let code = payload.slice(meta.code_start..);
        let checked = tokio::task::spawn_blocking(move || {
            let mut st = State::new(limit)
                .ok_or_else(|| "ERR Lua state could not be created".to_string())?;
            let mut refuse = Refuse;
            let regs = run::load_library(
                &mut st,
                &code,
                &mut refuse,
                Instant::now() + Duration::from_millis(500),
            )
            .map_err(|e| format!("ERR {e}"))?;
            Ok::<_, String>((
                code,
                regs.functions
                    .into_iter()
                    .map(|f| (f.name, f.flags))
                    .collect::<HashMap<_, _>>(),
            ))
        })
        .await
        .map_err(|_| "ERR script engine failure".to_string())??;
        let (code, functions) = checked;
        let mut libs = self
            .inner
            .libraries
            .write()
            .map_err(|_| "ERR script engine failure".to_string())?;
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
        let removed = self
            .inner
            .libraries
            .write()
            .is_ok_and(|mut m| m.remove(name).is_some());
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
        let (mine, other): (Vec<&Running>, Vec<&Running>) =
            running.values().partition(|r| r.eval == eval);
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
            What::EvalSha(sha) => match self
                .inner
                .scripts
                .read()
                .ok()
                .and_then(|m| m.get(sha).cloned())
            {
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
        let call = ChannelCall {
            tx,
            reply_tx,
            reply_rx,
        };
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
            What::EvalSha(sha) => match self
                .inner
                .scripts
                .read()
                .ok()
                .and_then(|m| m.get(sha).cloned())
            {
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
        libs.iter()
            .find(|(_, l)| l.functions.contains_key(name))
            .map(|(n, l)| (n.clone(), l.clone()))
    }

    fn take_state(&self) -> Option<Pooled> {
        let pooled = self.inner.idle.lock().ok().and_then(|mut v| v.pop());
        let generation = self.inner.generation.load(Ordering::Relaxed);
        match pooled {
            Some(p) if p.generation == generation || p.functions.is_empty() => {
                Some(Pooled { generation, ..p })
            }
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
            r.insert(
                id,
                Running {
                    eval: body.is_some(),
                    kill: kill.clone(),
                    wrote: wrote.clone(),
                },
            );
        }
        let timeout = Duration::from_millis(self.inner.timeout_ms.load(Ordering::Relaxed));
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
                let reply = run::run(
                    &mut pooled.state,
                    &Target::Script { body, sha: &sha },
                    &params,
                    &mut call,
                );
                if !reply.starts_with(b"-ERR Error compiling")
                    && let Ok(mut m) = self.inner.scripts.write()
                {
                    m.entry(sha).or_insert_with(|| body.clone());
                }
                reply
            }
            (None, What::Fcall(name), Some((_, lib))) => {
                self.call_function(&mut pooled, name, lib, &params, &mut call)
            }
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

    fn call_function(
        &self,
        pooled: &mut Pooled,
        name: &str,
        lib: &Library,
        params: &Params<'_>,
        call: &mut dyn Call,
    ) -> Vec<u8> {
        if !pooled.functions.contains_key(name) {
            let mut refuse = Refuse;
            match run::load_library(
                &mut pooled.state,
                &lib.code,
                &mut refuse,
                Instant::now() + Duration::from_millis(500),
            ) {
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
        run::run(
            &mut pooled.state,
            &Target::Function {
                name,
                func_ref,
                flags: fl,
            },
            params,
            call,
        )
    }
}
