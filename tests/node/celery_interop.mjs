#!/usr/bin/env node
// Node pg-boss on the same queues as zeke's Celery workers, for the broker interop tests.
//
// <release>: 12.38 | 12.34 | 12.5 (the npm aliases installed by package.json in this folder).
//
//   node tests/node/celery_interop.mjs <release> <connectionString> <schema> install
//       start() with migrate: true (this release's own schema); prints {"schemaVersion": n}
//   node tests/node/celery_interop.mjs <release> <connectionString> <schema> send <queue> <json data>
//       boss.send(queue, data); prints {"id": "..."}
//   node tests/node/celery_interop.mjs <release> <connectionString> <schema> work <queue> <count> <timeoutMs>
//       boss.work(queue) until <count> jobs were handled (each completed with {"handledBy": "node"});
//       prints {"jobs": [{"id", "data"}...]}
//
// Exits 1 with the error on stderr on failure (including a timeout).
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const RELEASES = { '12.38': 'pg-boss', '12.34': 'pg-boss-12-34', '12.5': 'pg-boss-12-5' };
const require = createRequire(import.meta.url);
let release = '12.38';

async function loadBoss() {
  const name = RELEASES[release];
  if (!name) throw new Error(`unknown pg-boss release ${release}; known: ${Object.keys(RELEASES).join(', ')}`);
  const dir = require.resolve(`${name}/package.json`).replace(/package\.json$/, '');
  const mod = await import(pathToFileURL(dir + 'dist/index.js').href);
  return mod.PgBoss ?? mod.default;
}

async function withBoss(url, schema, body, migrate = false) {
  const PgBoss = await loadBoss();
  const boss = new PgBoss({ connectionString: url, schema, max: 3, supervise: false, schedule: false, migrate });
  const errors = [];
  boss.on('error', err => errors.push(err));
  await boss.start();
  try {
    return await body(boss);
  } finally {
    await boss.stop({ graceful: false, timeout: 5000 });
    if (errors.length) throw errors[0];
  }
}

const COMMANDS = {
  async install(url, schema) {
    return withBoss(url, schema, async boss => ({ schemaVersion: await boss.schemaVersion() }), true);
  },

  async send(url, schema, queue, json) {
    return withBoss(url, schema, async boss => ({ id: await boss.send(queue, JSON.parse(json)) }));
  },

  async work(url, schema, queue, count, timeoutMs) {
    return withBoss(url, schema, async boss => {
      const jobs = [];
      let done;
      const finished = new Promise(resolve => { done = resolve; });
      await boss.work(queue, { pollingIntervalSeconds: 0.5 }, async ([job]) => {
        jobs.push({ id: job.id, data: job.data });
        if (jobs.length >= Number(count)) done();
        return { handledBy: 'node' };
      });
      const timer = setTimeout(() => done(), Number(timeoutMs));
      await finished;
      clearTimeout(timer);
      await boss.offWork(queue, { wait: true });
      if (jobs.length < Number(count)) throw new Error(`only ${jobs.length} of ${count} jobs arrived`);
      return { jobs };
    });
  }
};

async function main() {
  const [which, url, schema, command, ...rest] = process.argv.slice(2);
  release = which;
  const run = COMMANDS[command];
  if (!run) throw new Error(`usage: celery_interop.mjs <release> <url> <schema> <${Object.keys(COMMANDS).join('|')}> ...`);
  process.stdout.write(JSON.stringify(await run(url, schema, ...rest)) + '\n');
}

main().catch(err => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
