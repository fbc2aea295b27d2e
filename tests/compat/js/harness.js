// Shared runner for the node.js batteries: argument parsing, one line per
// case (`PASS name` / `FAIL name: reason`), a per-case timeout, key cleanup
// over a raw RESP2 socket (so it works even when the client library under
// test cannot talk to the server), and the closing JSON summary.
'use strict';

const net = require('node:net');
const crypto = require('node:crypto');

const CASE_TIMEOUT_MS = Number(process.env.COMPAT_CASE_TIMEOUT_MS || 15000);

function parseArgs(argv) {
  const opts = { host: '127.0.0.1', port: 6379, json: null, only: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--host') opts.host = next();
    else if (a === '--port') opts.port = Number(next());
    else if (a === '--json') opts.json = next();
    else if (a === '--only') opts.only = next().split(',');
    else if (a === '--variant') opts.variant = next();
    else if (a === '--help' || a === '-h') {
      console.log('usage: node BATTERY.js --host H --port P [--variant NAME] [--only a,b] [--json FILE]');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(opts.port) || opts.port <= 0) throw new Error('--port must be a port number');
  return opts;
}

function uniquePrefix(tag) {
  return `compat:${tag}:${crypto.randomBytes(4).toString('hex')}:`;
}

function encode(args) {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) {
    const b = Buffer.from(String(a));
    parts.push(`$${b.length}\r\n`, b, '\r\n');
  }
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
}

// Sends one single-key DEL per key on a plain RESP2 connection and waits for
// as many replies (counted by line starts: DEL answers an integer or an
// error, both one line). Never throws: cleanup is best effort.
function rawDel(host, port, keys, timeoutMs = 5000) {
  if (keys.length === 0) return Promise.resolve(0);
  return new Promise((resolve) => {
    const sock = net.createConnection({ host, port });
    let buf = '';
    let replies = 0;
    const done = (n) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(n);
    };
    const timer = setTimeout(() => done(replies), timeoutMs);
    sock.on('error', () => done(replies));
    sock.on('connect', () => {
      sock.write(Buffer.concat(keys.map((k) => encode(['DEL', k]))));
    });
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const lines = buf.split('\r\n');
      buf = lines.pop();
      replies += lines.length;
      if (replies >= keys.length) done(replies);
    });
  });
}

function errText(e) {
  if (e === undefined || e === null) return String(e);
  if (e instanceof Error) {
    let s = `${e.name && e.name !== 'Error' ? e.name + ': ' : ''}${e.message}`;
    if (e.replies) s += ` replies=${short(e.replies)}`;
    if (e.errorIndexes) s += ` errorIndexes=${JSON.stringify(e.errorIndexes)}`;
    return s;
  }
  return short(e);
}

function short(v, max = 160) {
  let s;
  try {
    s = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v, (k, x) => (typeof x === 'bigint' ? x.toString() : Buffer.isBuffer(x) ? x.toString() : x));
  } catch {
    s = String(v);
  }
  if (s === undefined) s = String(v);
  return s.length > max ? s.slice(0, max) + '...' : s;
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function assertEq(actual, expected, what) {
  const a = short(actual, 400);
  const e = short(expected, 400);
  if (a !== e) throw new Error(`${what}: expected ${short(expected)}, got ${short(actual)}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A promise awaited later (after other awaits) must not reject unhandled in
// between: settle() holds its outcome, unsettle() turns it back.
const settle = (p) => p.then((value) => ({ value }), (error) => ({ error }));
const unsettle = async (s) => {
  const r = await s;
  if ('error' in r) throw r.error;
  return r.value;
};

// Context handed to each case: a unique key prefix, a list of keys to delete
// afterwards, clients to close, and the errors those clients emitted (shown
// in the reason when a case times out).
class Ctx {
  constructor(opts, name) {
    this.opts = opts;
    this.prefix = uniquePrefix(name);
    this.keys = [];
    this.clients = [];
    this.errors = [];
  }
  key(suffix) {
    const k = this.prefix + suffix;
    this.keys.push(k);
    return k;
  }
  // Hash-tagged key: every key made with the same tag lands on one shard.
  taggedKey(tag, suffix) {
    const k = `{${this.prefix}${tag}}:${suffix}`;
    this.keys.push(k);
    return k;
  }
  track(client, closer) {
    this.clients.push({ client, closer });
    if (typeof client.on === 'function') {
      client.on('error', (e) => {
        if (this.errors.length < 5) this.errors.push(errText(e));
      });
    }
    return client;
  }
}

async function runBattery({ client, version, variant, protocol, cases, closeClient }) {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.variant && opts.variant !== variant) {
    throw new Error(`this battery runs variant ${variant}, not ${opts.variant}`);
  }
  const target = `${opts.host}:${opts.port}`;
  const results = [];
  console.log(`# ${client} ${version} (${variant}, ${protocol}) against ${target}`);
  for (const [name, fn] of cases) {
    if (opts.only && !opts.only.includes(name)) continue;
    const ctx = new Ctx(opts, name);
    const started = Date.now();
    let ok = false;
    let reason = '';
    let timer;
    try {
      await Promise.race([
        fn(ctx),
        new Promise((_, rej) => {
          timer = setTimeout(() => {
            const errs = ctx.errors.length ? `; client errors: ${ctx.errors.join(' | ')}` : '';
            rej(new Error(`timed out after ${CASE_TIMEOUT_MS} ms${errs}`));
          }, CASE_TIMEOUT_MS);
        }),
      ]);
      ok = true;
    } catch (e) {
      reason = errText(e).replace(/\s+/g, ' ').trim();
      if (reason.length > 300) reason = reason.slice(0, 300) + '...';
    } finally {
      clearTimeout(timer);
    }
    for (const { client: c, closer } of ctx.clients) {
      try {
        await Promise.race([(closer || closeClient)(c), sleep(1000)]);
      } catch {
        /* closing a broken client may throw; it is gone either way */
      }
    }
    await rawDel(opts.host, opts.port, ctx.keys);
    const ms = Date.now() - started;
    results.push({ name, ok, reason, ms });
    console.log(ok ? `PASS ${name}` : `FAIL ${name}: ${reason}`);
  }
  const summary = {
    client,
    version,
    variant,
    protocol,
    target,
    passed: results.filter((r) => r.ok).length,
    failed: results.filter((r) => !r.ok).length,
    cases: results,
  };
  const line = JSON.stringify(summary);
  console.log(`SUMMARY ${line}`);
  if (opts.json) require('node:fs').writeFileSync(opts.json, line + '\n');
  // Clients that failed their handshake may keep reconnect timers alive.
  process.exit(0);
}

// A stray rejection from a client under test must not end the battery.
process.on('unhandledRejection', (e) => console.log(`# unhandled rejection: ${errText(e)}`));

module.exports = { runBattery, assert, assertEq, short, sleep, settle, unsettle, errText, rawDel };
