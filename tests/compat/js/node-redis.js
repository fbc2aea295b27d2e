// node-redis (npm package `redis`) battery. Clients are made with
// `createClient({ socket: { host, port } })` and nothing else, so the
// library's defaults apply (RESP3 since v5, CLIENT SETINFO on connect);
// `--resp 2` adds only `RESP: 2`.
//
//   node js/node-redis.js --host 127.0.0.1 --port 6379            defaults
//   node js/node-redis.js --resp 2 --host 127.0.0.1 --port 6379   RESP2
'use strict';

const path = require('node:path');
const { createClient, defineScript, WatchError } = require('redis');
const { runBattery, assert, assertEq, sleep, settle, unsettle } = require('./harness');

const argv = process.argv;
function takeOpt(name) {
  const i = argv.indexOf(name);
  if (i < 0) return null;
  const v = argv[i + 1];
  argv.splice(i, 2);
  return v;
}
const respOpt = takeOpt('--resp');
const version = require(path.join(path.dirname(require.resolve('redis/package.json')), 'package.json')).version;
const clientVersion = require('@redis/client/package.json').version;
const defaultResp = require('@redis/client/dist/lib/RESP/types').DEFAULT_RESP;
const variant = respOpt ? `RESP=${respOpt}` : 'default';
const protocol = `RESP${respOpt || defaultResp}`;

async function connect(ctx, extra = {}) {
  const o = { socket: { host: ctx.opts.host, port: ctx.opts.port }, ...extra };
  if (respOpt) o.RESP = Number(respOpt);
  return connected(ctx.track(createClient(o)));
}

async function duplicate(ctx, client) {
  return connected(ctx.track(client.duplicate()));
}

// connect() keeps retrying (default reconnect strategy) when the handshake
// is refused, and only the 'error' events tell why: the first one fails the
// case at once instead of letting it run into the case timeout.
async function connected(client) {
  let onError;
  const failed = new Promise((_, reject) => {
    onError = (e) => reject(new Error(`connect failed: ${e.message}`));
    client.once('error', onError);
  });
  try {
    await Promise.race([client.connect(), failed]);
  } finally {
    client.removeListener('error', onError);
  }
  return client;
}

async function close(c) {
  if (!c.isOpen) return;
  try {
    await c.close();
  } catch {
    c.destroy();
  }
}

const cases = [];
const c = (name, fn) => cases.push([name, fn]);

c('connect_ping', async (ctx) => {
  const r = await connect(ctx);
  assertEq(await r.ping(), 'PONG', 'PING');
});

c('pipeline_1000', async (ctx) => {
  const r = await connect(ctx);
  const n = 500;
  const keys = Array.from({ length: n }, (_, i) => ctx.key(`p${i}`));
  const p = r.multi();
  keys.forEach((k, i) => p.set(k, `v${i}`));
  keys.forEach((k) => p.get(k));
  const res = await p.execAsPipeline();
  assertEq(res.length, 2 * n, 'reply count');
  for (let i = 0; i < n; i++) assertEq(res[i], 'OK', `SET #${i}`);
  for (let i = 0; i < n; i++) assertEq(res[n + i], `v${i}`, `GET #${i} (order)`);
});

c('mset_mget', async (ctx) => {
  const r = await connect(ctx);
  const keys = Array.from({ length: 30 }, (_, i) => ctx.key(`m${i}`));
  const obj = {};
  keys.forEach((k, i) => (obj[k] = `mv${i}`));
  assertEq(await r.mSet(obj), 'OK', 'MSET');
  const missing = ctx.key('missing');
  const got = await r.mGet([...keys.slice(0, 15), missing, ...keys.slice(15)]);
  const want = [...keys.slice(0, 15).map((_, i) => `mv${i}`), null, ...keys.slice(15).map((_, i) => `mv${i + 15}`)];
  assertEq(got, want, 'MGET');
});

c('multi_exec', async (ctx) => {
  const r = await connect(ctx);
  const a = ctx.taggedKey('user:1', 'a');
  const b = ctx.taggedKey('user:1', 'b');
  const res = await r.multi().set(a, '1').incr(a).set(b, 'x').get(b).exec();
  assertEq(res, ['OK', 2, 'OK', 'x'], 'EXEC result');
  assertEq(await r.mGet([a, b]), ['2', 'x'], 'values after EXEC');
});

c('multi_exec_abort', async (ctx) => {
  const r = await connect(ctx);
  const a = ctx.taggedKey('user:1', 'a');
  const b = ctx.taggedKey('user:1', 'b');
  let threw = null;
  let res;
  try {
    // SET with a missing value is rejected at queue time: EXEC answers EXECABORT.
    res = await r.multi().set(a, '1').addCommand(['SET', b]).exec();
  } catch (e) {
    threw = e;
  }
  assert(threw, `EXEC did not fail (got ${JSON.stringify(res)})`);
  // node-redis rejects with the queue-time error of the bad command (the
  // server's EXEC reply is EXECABORT).
  assert(/EXECABORT|wrong number of arguments/.test(threw.message), `expected EXECABORT or the queue-time error, got: ${threw.message}`);
  assertEq(await r.exists([a, b]), 0, 'keys written by an aborted transaction');
});

c('multi_watch_abort', async (ctx) => {
  const r = await connect(ctx);
  const other = await connect(ctx);
  const a = ctx.taggedKey('user:1', 'a');
  const b = ctx.taggedKey('user:1', 'b');
  assertEq(await r.set(a, 'orig'), 'OK', 'SET');
  assertEq(await r.watch(a), 'OK', 'WATCH');
  assertEq(await other.set(a, 'changed'), 'OK', 'SET from another connection');
  let threw = null;
  try {
    await r.multi().set(a, 'tx').set(b, 'tx').exec();
  } catch (e) {
    threw = e;
  }
  assert(threw instanceof WatchError, `expected WatchError, got ${threw ? `${threw.name}: ${threw.message}` : 'success'}`);
  assertEq(await r.mGet([a, b]), ['changed', null], 'values after aborted EXEC');
});

function tag() {
  return Math.random().toString(36).slice(2);
}

c('script_evalsha', async (ctx) => {
  const setGet = defineScript({
    SCRIPT: `-- ${tag()}\nredis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])`,
    NUMBER_OF_KEYS: 1,
    parseCommand(parser, key, value) {
      parser.pushKey(key);
      parser.push(value);
    },
    transformReply: undefined,
  });
  const r = await connect(ctx, { scripts: { setGet } });
  const k = ctx.key('lua');
  assertEq(await r.setGet(k, 'one'), 'one', 'first call (EVALSHA -> NOSCRIPT -> EVAL)');
  assertEq(await r.setGet(k, 'two'), 'two', 'second call (EVALSHA)');
  assertEq(await r.get(k), 'two', 'GET');
  // Keys on other shards: there the script is not loaded yet (NOSCRIPT).
  for (let i = 0; i < 6; i++) {
    const other = ctx.key(`lua${i}`);
    assertEq(await r.setGet(other, `v${i}`), `v${i}`, `call on key ${i} (another shard)`);
  }
});

c('script_keyless', async (ctx) => {
  const echo = defineScript({
    SCRIPT: `-- ${tag()}\nreturn ARGV[1] .. '!'`,
    NUMBER_OF_KEYS: 0,
    parseCommand(parser, value) {
      parser.push(value);
    },
    transformReply: undefined,
  });
  const r = await connect(ctx, { scripts: { echo } });
  assertEq(await r.echo('hi'), 'hi!', 'first call');
  assertEq(await r.echo('ho'), 'ho!', 'second call');
});

async function writeScanKeys(r, ctx, n) {
  const keys = Array.from({ length: n }, (_, i) => ctx.key(`s${i}`));
  const p = r.multi();
  keys.forEach((k) => p.set(k, '1'));
  await p.execAsPipeline();
  return keys;
}

async function scanAll(r, ctx) {
  const seen = [];
  for await (const batch of r.scanIterator({ MATCH: `${ctx.prefix}*` })) {
    if (Array.isArray(batch)) seen.push(...batch);
    else seen.push(batch);
  }
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
  const r = await connect(ctx);
  const keys = await writeScanKeys(r, ctx, 500);
  const { missing, extra, dups } = compareScan(keys, await scanAll(r, ctx));
  assert(missing.length === 0 && extra.length === 0,
    `${missing.length} missing, ${extra.length} unexpected (e.g. ${[...missing, ...extra].slice(0, 3).join(', ')}), ${dups} duplicates`);
});

c('scan_iter_no_dups', async (ctx) => {
  const r = await connect(ctx);
  const keys = await writeScanKeys(r, ctx, 500);
  const seen = await scanAll(r, ctx);
  const { dups, missing } = compareScan(keys, seen);
  assert(dups === 0, `${dups} duplicate keys in ${seen.length} returned (SCAN allows some; informational)`);
  assert(missing.length === 0, `${missing.length} keys missing`);
});

function deferred(ms, what) {
  let resolve;
  let reject;
  const p = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const t = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  return {
    promise: settle(p),
    resolve: (v) => {
      clearTimeout(t);
      resolve(v);
    },
  };
}

c('subscribe', async (ctx) => {
  const pub = await connect(ctx);
  const sub = await duplicate(ctx, pub);
  const ch = `${ctx.prefix}chan`;
  const got = deferred(5000, 'message');
  await sub.subscribe(ch, (message, channel) => got.resolve([message, channel]));
  const receivers = await pub.publish(ch, 'hello');
  assert(receivers >= 1, `PUBLISH reached ${receivers} subscribers`);
  assertEq(await unsettle(got.promise), ['hello', ch], 'message');
  await sub.unsubscribe(ch);
  // After UNSUBSCRIBE node-redis 6 on RESP2 hands PING's reply back as a Buffer.
  assertEq(String(await sub.ping()), 'PONG', 'PING after UNSUBSCRIBE');
});

c('psubscribe', async (ctx) => {
  const pub = await connect(ctx);
  const sub = await duplicate(ctx, pub);
  const pattern = `${ctx.prefix}news.*`;
  const ch = `${ctx.prefix}news.sport`;
  const got = deferred(5000, 'pmessage');
  await sub.pSubscribe(pattern, (message, channel) => got.resolve([message, channel]));
  const receivers = await pub.publish(ch, 'goal');
  assert(receivers >= 1, `PUBLISH reached ${receivers} subscribers`);
  assertEq(await unsettle(got.promise), ['goal', ch], 'pmessage');
  await sub.pUnsubscribe(pattern);
  assertEq(String(await sub.ping()), 'PONG', 'PING after PUNSUBSCRIBE');
});

c('blpop_wakeup', async (ctx) => {
  const pusher = await connect(ctx);
  const blocker = await duplicate(ctx, pusher);
  const k = ctx.key('list');
  const started = Date.now();
  const pending = settle(blocker.blPop(k, 5));
  await sleep(300);
  assertEq(await pusher.lPush(k, 'job'), 1, 'LPUSH');
  const res = await unsettle(pending);
  const took = Date.now() - started;
  assertEq(res, { key: k, element: 'job' }, 'BLPOP reply');
  assert(took < 4000, `BLPOP woke after ${took} ms`);
});

c('blpop_timeout', async (ctx) => {
  const r = await connect(ctx);
  const k = ctx.key('empty');
  const started = Date.now();
  const res = await r.blPop(k, 1);
  const took = Date.now() - started;
  assertEq(res, null, 'BLPOP reply on timeout');
  assert(took >= 900 && took < 4000, `BLPOP returned after ${took} ms, expected ~1000`);
});

c('info', async (ctx) => {
  const r = await connect(ctx);
  const all = await r.info();
  assert(/^redis_version:/m.test(all), 'INFO has no redis_version line');
  const server = await r.info('server');
  assert(/^redis_version:/m.test(server), 'INFO server has no redis_version line');
});

c('client_setname_getname', async (ctx) => {
  const r = await connect(ctx);
  const name = `compat-${tag().slice(0, 6)}`;
  assertEq(await r.clientSetName(name), 'OK', 'CLIENT SETNAME');
  assertEq(await r.clientGetName(), name, 'CLIENT GETNAME');
});

c('select_0', async (ctx) => {
  const r = await connect(ctx);
  // node-redis resolves SELECT to undefined; an error would reject.
  await r.select(0);
  assertEq(await r.ping(), 'PONG', 'PING after SELECT');
});

c('dbsize', async (ctx) => {
  const r = await connect(ctx);
  await r.set(ctx.key('d1'), '1');
  await r.set(ctx.key('d2'), '1');
  await r.set(ctx.key('d3'), '1');
  const n = await r.dbSize();
  assert(Number.isInteger(n) && n >= 3, `DBSIZE answered ${JSON.stringify(n)}, expected an integer >= 3`);
});

runBattery({
  client: 'node-redis',
  version: version === clientVersion ? version : `${version} (@redis/client ${clientVersion})`,
  variant,
  protocol,
  cases,
  closeClient: close,
}).catch((e) => {
  console.error(e);
  process.exit(2);
});
