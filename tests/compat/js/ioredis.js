// ioredis battery. Every client is made with `new Redis({ host, port })` and
// nothing else, so the library's defaults apply (ready check with INFO,
// offline queue, reconnect forever, and in ioredis 6 `protocol: 3`).
//
//   node js/ioredis.js --host 127.0.0.1 --port 6379                    ioredis 5, defaults
//   node js/ioredis.js --module ioredis6 --host ... --port ...          ioredis 6, defaults
//   node js/ioredis.js --module ioredis6 --protocol 2 --host ...        ioredis 6, RESP2
'use strict';

const path = require('node:path');
const { runBattery, assert, assertEq, sleep, settle, unsettle } = require('./harness');

// Options of this file, taken out before the harness parses the rest.
const argv = process.argv;
function takeOpt(name) {
  const i = argv.indexOf(name);
  if (i < 0) return null;
  const v = argv[i + 1];
  argv.splice(i, 2);
  return v;
}
const moduleName = takeOpt('--module') || 'ioredis';
const protocolOpt = takeOpt('--protocol');

const mod = require(moduleName);
const Redis = mod.default || mod.Redis || mod;
const version = require(path.join(path.dirname(require.resolve(`${moduleName}/package.json`)), 'package.json')).version;
const major = Number(version.split('.')[0]);
const defaultProtocol = major >= 6 ? 'RESP3 (HELLO 3, falls back to RESP2 on NOPROTO)' : 'RESP2';
const variant = protocolOpt ? `protocol=${protocolOpt}` : 'default';
const protocol = protocolOpt ? `RESP${protocolOpt}` : defaultProtocol;

let host;
let port;
function connect(ctx, extra = {}) {
  const o = { host: ctx.opts.host, port: ctx.opts.port, ...extra };
  if (protocolOpt) o.protocol = Number(protocolOpt);
  return ctx.track(new Redis(o));
}

function close(c) {
  return c.quit().catch(() => c.disconnect());
}

const cases = [];
const c = (name, fn) => cases.push([name, fn]);

c('connect_ping', async (ctx) => {
  const r = connect(ctx);
  assertEq(await r.ping(), 'PONG', 'PING');
});

c('pipeline_1000', async (ctx) => {
  const r = connect(ctx);
  const n = 500;
  const keys = Array.from({ length: n }, (_, i) => ctx.key(`p${i}`));
  const p = r.pipeline();
  keys.forEach((k, i) => p.set(k, `v${i}`));
  keys.forEach((k) => p.get(k));
  const res = await p.exec();
  assertEq(res.length, 2 * n, 'reply count');
  for (let i = 0; i < n; i++) {
    const [err, v] = res[i];
    assert(!err, `SET #${i} failed: ${err && err.message}`);
    assertEq(v, 'OK', `SET #${i}`);
  }
  for (let i = 0; i < n; i++) {
    const [err, v] = res[n + i];
    assert(!err, `GET #${i} failed: ${err && err.message}`);
    assertEq(v, `v${i}`, `GET #${i} (order)`);
  }
});

c('mset_mget', async (ctx) => {
  const r = connect(ctx);
  const keys = Array.from({ length: 30 }, (_, i) => ctx.key(`m${i}`));
  const obj = {};
  keys.forEach((k, i) => (obj[k] = `mv${i}`));
  assertEq(await r.mset(obj), 'OK', 'MSET');
  const missing = ctx.key('missing');
  const got = await r.mget(...keys.slice(0, 15), missing, ...keys.slice(15));
  const want = [...keys.slice(0, 15).map((_, i) => `mv${i}`), null, ...keys.slice(15).map((_, i) => `mv${i + 15}`)];
  assertEq(got, want, 'MGET');
});

c('multi_exec', async (ctx) => {
  const r = connect(ctx);
  const a = ctx.taggedKey('user:1', 'a');
  const b = ctx.taggedKey('user:1', 'b');
  const res = await r.multi().set(a, '1').incr(a).set(b, 'x').get(b).exec();
  assertEq(res, [[null, 'OK'], [null, 2], [null, 'OK'], [null, 'x']], 'EXEC result');
  assertEq(await r.mget(a, b), ['2', 'x'], 'values after EXEC');
});

c('multi_exec_abort', async (ctx) => {
  const r = connect(ctx);
  const a = ctx.taggedKey('user:1', 'a');
  const b = ctx.taggedKey('user:1', 'b');
  let threw = null;
  let res;
  try {
    // SET with a missing value is rejected at queue time: EXEC answers EXECABORT.
    res = await r.multi().set(a, '1').call('SET', b).exec();
  } catch (e) {
    threw = e;
  }
  assert(threw, `EXEC did not fail (got ${JSON.stringify(res)})`);
  assert(/EXECABORT/.test(threw.message), `expected EXECABORT, got: ${threw.message}`);
  assertEq(await r.exists(a, b), 0, 'keys written by an aborted transaction');
});

c('multi_watch_abort', async (ctx) => {
  const r = connect(ctx);
  const other = connect(ctx);
  const a = ctx.taggedKey('user:1', 'a');
  const b = ctx.taggedKey('user:1', 'b');
  assertEq(await r.set(a, 'orig'), 'OK', 'SET');
  assertEq(await r.watch(a), 'OK', 'WATCH');
  assertEq(await other.set(a, 'changed'), 'OK', 'SET from another connection');
  const res = await r.multi().set(a, 'tx').set(b, 'tx').exec();
  assertEq(res, null, 'EXEC after a WATCHed key changed');
  assertEq(await r.mget(a, b), ['changed', null], 'values after aborted EXEC');
});

c('script_evalsha', async (ctx) => {
  const r = connect(ctx);
  const k = ctx.key('lua');
  const tag = Math.random().toString(36).slice(2);
  r.defineCommand('compatSetGet', {
    numberOfKeys: 1,
    lua: `-- ${tag}\nredis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])`,
  });
  // ioredis sends EVAL the first time on a socket, EVALSHA after that, and
  // EVAL again when EVALSHA answers NOSCRIPT.
  assertEq(await r.compatSetGet(k, 'one'), 'one', 'first call (EVAL)');
  assertEq(await r.compatSetGet(k, 'two'), 'two', 'second call (EVALSHA)');
  assertEq(await r.get(k), 'two', 'GET');
  // Keys on other shards: there the script is not loaded yet (NOSCRIPT).
  for (let i = 0; i < 6; i++) {
    const other = ctx.key(`lua${i}`);
    assertEq(await r.compatSetGet(other, `v${i}`), `v${i}`, `call on key ${i} (another shard)`);
  }
});

c('script_keyless', async (ctx) => {
  const r = connect(ctx);
  const tag = Math.random().toString(36).slice(2);
  r.defineCommand('compatEcho', { numberOfKeys: 0, lua: `-- ${tag}\nreturn ARGV[1] .. '!'` });
  assertEq(await r.compatEcho('hi'), 'hi!', 'first call');
  assertEq(await r.compatEcho('ho'), 'ho!', 'second call');
});

async function writeScanKeys(r, ctx, n) {
  const keys = Array.from({ length: n }, (_, i) => ctx.key(`s${i}`));
  const p = r.pipeline();
  keys.forEach((k) => p.set(k, '1'));
  const res = await p.exec();
  res.forEach(([err], i) => assert(!err, `setup SET #${i}: ${err && err.message}`));
  return keys;
}

async function scanAll(r, ctx) {
  const seen = [];
  await new Promise((resolve, reject) => {
    const s = r.scanStream({ match: `${ctx.prefix}*` });
    s.on('data', (batch) => seen.push(...batch));
    s.on('end', resolve);
    s.on('error', reject);
  });
  return seen;
}

function compareScan(keys, seen) {
  const want = new Set(keys);
  const got = new Set(seen);
  const missing = keys.filter((k) => !got.has(k));
  const extra = [...got].filter((k) => !want.has(k));
  return { missing, extra, dups: seen.length - got.size };
}

c('scan_iter', async (ctx) => {
  const r = connect(ctx);
  const keys = await writeScanKeys(r, ctx, 500);
  const { missing, extra, dups } = compareScan(keys, await scanAll(r, ctx));
  assert(missing.length === 0 && extra.length === 0,
    `${missing.length} missing, ${extra.length} unexpected (e.g. ${[...missing, ...extra].slice(0, 3).join(', ')}), ${dups} duplicates`);
});

c('scan_iter_no_dups', async (ctx) => {
  const r = connect(ctx);
  const keys = await writeScanKeys(r, ctx, 500);
  const seen = await scanAll(r, ctx);
  const { dups, missing } = compareScan(keys, seen);
  assert(dups === 0, `${dups} duplicate keys in ${seen.length} returned (SCAN allows some; informational)`);
  assert(missing.length === 0, `${missing.length} keys missing`);
});

function waitFor(emitter, event, pred, ms, what) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      emitter.removeListener(event, on);
      reject(new Error(`no ${what} within ${ms} ms`));
    }, ms);
    function on(...args) {
      if (pred(...args)) {
        clearTimeout(t);
        emitter.removeListener(event, on);
        resolve(args);
      }
    }
    emitter.on(event, on);
  });
}

c('subscribe', async (ctx) => {
  const sub = connect(ctx);
  const pub = connect(ctx);
  const ch = `${ctx.prefix}chan`;
  assertEq(await sub.subscribe(ch), 1, 'SUBSCRIBE count');
  const got = settle(waitFor(sub, 'message', (c) => c === ch, 5000, 'message'));
  const receivers = await pub.publish(ch, 'hello');
  assert(receivers >= 1, `PUBLISH reached ${receivers} subscribers`);
  const [, msg] = await unsettle(got);
  assertEq(msg, 'hello', 'message');
  await sub.unsubscribe(ch);
  assertEq(await sub.ping(), 'PONG', 'PING after UNSUBSCRIBE');
});

c('psubscribe', async (ctx) => {
  const sub = connect(ctx);
  const pub = connect(ctx);
  const pattern = `${ctx.prefix}news.*`;
  const ch = `${ctx.prefix}news.sport`;
  assertEq(await sub.psubscribe(pattern), 1, 'PSUBSCRIBE count');
  const got = settle(waitFor(sub, 'pmessage', (p) => p === pattern, 5000, 'pmessage'));
  const receivers = await pub.publish(ch, 'goal');
  assert(receivers >= 1, `PUBLISH reached ${receivers} subscribers`);
  const [, channel, msg] = await unsettle(got);
  assertEq([channel, msg], [ch, 'goal'], 'pmessage');
  await sub.punsubscribe(pattern);
  assertEq(await sub.ping(), 'PONG', 'PING after PUNSUBSCRIBE');
});

c('blpop_wakeup', async (ctx) => {
  const blocker = connect(ctx);
  const pusher = connect(ctx);
  const k = ctx.key('list');
  assertEq(await blocker.ping(), 'PONG', 'PING');
  const started = Date.now();
  const pending = settle(blocker.blpop(k, 5));
  await sleep(300);
  assertEq(await pusher.lpush(k, 'job'), 1, 'LPUSH');
  const res = await unsettle(pending);
  const took = Date.now() - started;
  assertEq(res, [k, 'job'], 'BLPOP reply');
  assert(took < 4000, `BLPOP woke after ${took} ms`);
});

c('blpop_timeout', async (ctx) => {
  const r = connect(ctx);
  const k = ctx.key('empty');
  const started = Date.now();
  const res = await r.blpop(k, 1);
  const took = Date.now() - started;
  assertEq(res, null, 'BLPOP reply on timeout');
  assert(took >= 900 && took < 4000, `BLPOP returned after ${took} ms, expected ~1000`);
});

c('info', async (ctx) => {
  const r = connect(ctx);
  const all = await r.info();
  assert(/^redis_version:/m.test(all), 'INFO has no redis_version line');
  const server = await r.info('server');
  assert(/^redis_version:/m.test(server), 'INFO server has no redis_version line');
});

c('client_setname_getname', async (ctx) => {
  const r = connect(ctx);
  const name = `compat-${Math.random().toString(36).slice(2, 8)}`;
  assertEq(await r.client('SETNAME', name), 'OK', 'CLIENT SETNAME');
  assertEq(await r.client('GETNAME'), name, 'CLIENT GETNAME');
});

c('select_0', async (ctx) => {
  const r = connect(ctx);
  assertEq(await r.select(0), 'OK', 'SELECT 0');
  assertEq(await r.ping(), 'PONG', 'PING after SELECT');
});

c('dbsize', async (ctx) => {
  const r = connect(ctx);
  await r.set(ctx.key('d1'), '1');
  await r.set(ctx.key('d2'), '1');
  await r.set(ctx.key('d3'), '1');
  const n = await r.dbsize();
  assert(Number.isInteger(n) && n >= 3, `DBSIZE answered ${JSON.stringify(n)}, expected an integer >= 3`);
});

runBattery({
  client: 'ioredis',
  version,
  variant,
  protocol,
  cases,
  closeClient: close,
}).catch((e) => {
  console.error(e);
  process.exit(2);
});
