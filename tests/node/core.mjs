#!/usr/bin/env node
// Node pg-boss as the other side of zeke's core interop tests (tests/interop/transport/test_manager.py).
//
//   node tests/node/core.mjs <release> <connectionString> <schema> <command> [--option value ...]
//
// <release>: 12.38 | 12.34 | 12.5 (the npm aliases installed by package.json in this folder).
// Every command but `install` starts pg-boss with migrate: false (never altering the schema it finds);
// all run with supervise: false and schedule: false (so only the test moves jobs), print one JSON
// object on stdout and exit 0; a failure prints the error on stderr and exits 1.
//
// Commands:
//   install       start() with migrate: true (creates this release's schema) and stop(); {"schemaVersion": n}
//   start         start() and stop(); {"schemaVersion": n}
//   create-queue  createQueue(--queue, --options JSON); {"queue": {...getQueue}}
//   send          send(--queue, --data JSON, --options JSON); {"id": id}
//   get           getJobById(--queue, --id); {"job": {...} | null}
//   queues        getQueues(--names JSON); {"queues": [...]}
//   stats         getQueueStats(--queue); {"stats": ...} (this release's shape)
//   flow          flow(--jobs JSON); {"ids": {ref: id}} (12.34+)
//   supervise     a second instance with supervise: true (every interval --interval seconds) for
//                 --seconds; {"warnings": [...]} it emitted
//   work          work(--queue) until --count jobs were handled (handler returns --result JSON, or
//                 {"seen": data} when absent), then offWork; {"jobs": [{id, data, retryCount}],
//                 "final": [getJobById of each, once settled]}
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const RELEASES = {
  '12.38': 'pg-boss', '12.38.1': 'pg-boss',
  '12.34': 'pg-boss-12-34', '12.34.0': 'pg-boss-12-34',
  '12.5': 'pg-boss-12-5', '12.5.4': 'pg-boss-12-5'
};
const require = createRequire(import.meta.url);

async function loadBoss(release) {
  const name = RELEASES[release];
  if (!name) throw new Error(`unknown pg-boss release ${release}; known: ${Object.keys(RELEASES).join(', ')}`);
  const dir = require.resolve(`${name}/package.json`).replace(/package\.json$/, '');
  const mod = await import(pathToFileURL(dir + 'dist/index.js').href);
  return mod.PgBoss ?? mod.default;
}

function parseOptions(argv) {
  const options = {};
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    if (!flag.startsWith('--') || i + 1 >= argv.length) throw new Error(`bad option ${flag}`);
    options[flag.slice(2)] = argv[i + 1];
  }
  return options;
}

const json = (text, fallback) => (text === undefined ? fallback : JSON.parse(text));
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

async function withBoss(release, connectionString, schema, migrate, body) {
  const Boss = await loadBoss(release);
  const boss = new Boss({ connectionString, schema, max: 3, migrate, supervise: false, schedule: false });
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
  async install(boss) {
    return { schemaVersion: await boss.schemaVersion() };
  },

  async start(boss) {
    return { schemaVersion: await boss.schemaVersion() };
  },

  async 'create-queue'(boss, o) {
    await boss.createQueue(o.queue, { policy: 'standard', ...json(o.options, {}) });
    return { queue: await boss.getQueue(o.queue) };
  },

  async send(boss, o) {
    return { id: await boss.send(o.queue, json(o.data, {}), json(o.options, {})) };
  },

  async get(boss, o) {
    return { job: await boss.getJobById(o.queue, o.id) };
  },

  async queues(boss, o) {
    return { queues: await boss.getQueues(json(o.names, undefined)) };
  },

  async stats(boss, o) {
    return { stats: await boss.getQueueStats(o.queue) };
  },

  async flow(boss, o) {
    return { ids: await boss.flow(json(o.jobs, [])) };
  },

  async work(boss, o) {
    const wanted = Number(o.count ?? 1);
    const deadline = Date.now() + Number(o.timeout ?? 30) * 1000;
    const result = json(o.result, undefined);
    const jobs = [];
    await boss.work(o.queue, { pollingIntervalSeconds: 0.5, batchSize: 1, includeMetadata: true }, async ([job]) => {
      jobs.push({ id: job.id, data: job.data, retryCount: job.retryCount ?? null });
      return result === undefined ? { seen: job.data } : result;
    });
    while (jobs.length < wanted && Date.now() < deadline) await sleep(50);
    await boss.offWork(o.queue);
    if (jobs.length < wanted) throw new Error(`handled ${jobs.length} of ${wanted} jobs before the timeout`);
    const final = [];
    for (const { id } of jobs) {
      let job = await boss.getJobById(o.queue, id);
      while (job?.state === 'active' && Date.now() < deadline) {
        await sleep(50);
        job = await boss.getJobById(o.queue, id);
      }
      final.push(job);
    }
    return { jobs, final };
  }
};

// A supervising instance beside the tests' own: Node's monitor, maintenance and flow passes.
async function supervise(release, connectionString, schema, o) {
  const Boss = await loadBoss(release);
  const every = Number(o.interval ?? 1);
  const boss = new Boss({
    connectionString, schema, max: 3, migrate: false, supervise: true, schedule: false,
    superviseIntervalSeconds: every, monitorIntervalSeconds: every, flowIntervalSeconds: every,
    maintenanceIntervalSeconds: Number(o.maintenance ?? 86400)
  });
  const warnings = [];
  const errors = [];
  boss.on('warning', warning => warnings.push(warning));
  boss.on('error', err => errors.push(err));
  await boss.start();
  process.stdout.write(JSON.stringify({ started: true }) + '\n');
  await sleep(Number(o.seconds ?? 5) * 1000);
  await boss.stop({ graceful: false, timeout: 5000 });
  if (errors.length) throw errors[0];
  return { warnings };
}

async function main() {
  const [release, url, schema, command, ...rest] = process.argv.slice(2);
  if (command === 'supervise') {
    process.stdout.write(JSON.stringify(await supervise(release, url, schema, parseOptions(rest))) + '\n');
    return;
  }
  const run = COMMANDS[command];
  if (!run) throw new Error(`usage: core.mjs <release> <url> <schema> <${Object.keys(COMMANDS).join('|')}> [--option value ...]`);
  const options = parseOptions(rest);
  const result = await withBoss(release, url, schema, command === 'install', boss => run(boss, options));
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch(err => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
