#!/usr/bin/env node
// Node pg-boss 12.38.1's own send/work loop, the Node row of `python -m bench.compare` (bench/node.py).
//
//   node bench/pgboss_loop.mjs <connectionString> <queue>
//
// pg-boss comes from tests/node/node_modules (`make node`). The instance runs with pg-boss's defaults
// plus useListenNotify, on a queue created with notify: true, so an idle worker wakes on NOTIFY as a
// zeke worker does. One command a line on stdin, one JSON line on stdout:
//   send <n>    n boss.send() one after another                  {"seconds": s}
//   insert <n>  one boss.insert() of n jobs                       {"seconds": s}
//   drain <n>   work() (2 loops of batchSize 4, bursting while batches come back full, the Celery
//               worker's -c 2 with prefetch 4) until n jobs ran    {"seconds": s from work() to the last handler end}
//   ping <n>    n sends, one at a time, 10 ms apart, to the now idle worker
//                                                                 {"latencies": [s from send() to its handler]}
//   quit
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const modules = fileURLToPath(new URL('../tests/node/package.json', import.meta.url));
const require = createRequire(modules);
const dir = require.resolve('pg-boss/package.json').replace(/package\.json$/, '');
const mod = await import(pathToFileURL(dir + 'dist/index.js').href);
const PgBoss = mod.PgBoss ?? mod.default;

const [connectionString, queue] = process.argv.slice(2);
const boss = new PgBoss({ connectionString, useListenNotify: true });
boss.on('error', err => process.stderr.write(`pg-boss error: ${err.message}\n`));
await boss.start();
await boss.createQueue(queue, { notify: true });

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
const seconds = since => Number(process.hrtime.bigint() - since) / 1e9;
const reply = value => process.stdout.write(JSON.stringify(value) + '\n');

// Handlers report here: the drain counts down to its last job, a ping resolves its waiter.
let remaining = 0;
let drained = null;
let lastEnd = 0n;
let pinged = null;

async function handler(jobs) {
  for (const job of jobs) {
    if (job.data?.ping && pinged) pinged(process.hrtime.bigint());
  }
  remaining -= jobs.length;
  lastEnd = process.hrtime.bigint();
  if (remaining <= 0 && drained) drained();
}

const commands = {
  async send(n) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await boss.send(queue, { n: i });
    return { seconds: seconds(started) };
  },
  async insert(n) {
    const jobs = Array.from({ length: n }, (_, i) => ({ data: { n: i } }));
    const started = process.hrtime.bigint();
    await boss.insert(queue, jobs);
    return { seconds: seconds(started) };
  },
  async drain(n) {
    remaining = n;
    const done = new Promise(resolve => { drained = resolve; });
    const started = process.hrtime.bigint();
    await boss.work(queue, { batchSize: 4, localConcurrency: 2, burstWhenBatchFull: true }, handler);
    await done;
    return { seconds: Number(lastEnd - started) / 1e9 };
  },
  async ping(n) {
    const latencies = [];
    for (let i = 0; i < n; i++) {
      const ran = new Promise(resolve => { pinged = resolve; });
      const sent = process.hrtime.bigint();
      await boss.send(queue, { ping: true });
      latencies.push(Number((await ran) - sent) / 1e9);
      await sleep(10);
    }
    return { latencies };
  }
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const [name, arg] = line.trim().split(/\s+/);
  if (name === 'quit') break;
  try {
    reply(await commands[name](Number(arg)));
  } catch (err) {
    reply({ error: String(err?.stack ?? err) });
  }
}
await boss.stop({ graceful: false, wait: true });
process.exit(0);
