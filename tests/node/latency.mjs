#!/usr/bin/env node
// Node pg-boss as the other side of zeke's Node ⇄ Python latency bench (bench/interop.py).
//
//   node tests/node/latency.mjs <release> <connectionString> <schema> <command> [--option value ...]
//
// <release>: 12.38 | 12.34 | 12.5 (the npm aliases installed by package.json in this folder).
// Every instance runs with supervise: false, schedule: false and migrate: false unless told.
//
// Commands:
//   install  start() with migrate: true (this release's own schema); {"schemaVersion": n}
//   send     send --count jobs to --queue one at a time, each once the one before completed (read
//            every 10 ms) and a pause of up to --gap ms after it; {"ids": [...]}
//   serve    work(--queue) with pg-boss's default polling (2 s), LISTEN only with --listen true,
//            completing each job with {"node": true}, for --seconds; prints {"ready": true} once
//            working, then {"handled": n} at the end
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const RELEASES = { '12.38': 'pg-boss', '12.34': 'pg-boss-12-34', '12.5': 'pg-boss-12-5' };
const require = createRequire(import.meta.url);
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

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
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) throw new Error(`bad option ${argv[i]}`);
    options[argv[i].slice(2)] = argv[i + 1];
  }
  return options;
}

async function main() {
  const [release, connectionString, schema, command, ...rest] = process.argv.slice(2);
  const o = parseOptions(rest);
  const Boss = await loadBoss(release);
  const boss = new Boss({
    connectionString, schema, max: 4, supervise: false, schedule: false,
    migrate: command === 'install', useListenNotify: o.listen === 'true'
  });
  const errors = [];
  boss.on('error', err => errors.push(err));
  await boss.start();
  let result;
  try {
    if (command === 'install') {
      result = { schemaVersion: await boss.schemaVersion() };
    } else if (command === 'send') {
      const ids = [];
      for (let i = 0; i < Number(o.count ?? 1); i++) {
        const id = await boss.send(o.queue, { n: i });
        ids.push(id);
        const deadline = Date.now() + 60_000;
        while ((await boss.getJobById(o.queue, id))?.state !== 'completed') {
          if (Date.now() > deadline) throw new Error(`job ${id} did not complete within 60 s`);
          await sleep(10);
        }
        await sleep(Math.random() * Number(o.gap ?? 0));
      }
      result = { ids };
    } else if (command === 'serve') {
      let handled = 0;
      await boss.work(o.queue, async () => { handled += 1; return { node: true }; });
      process.stdout.write(JSON.stringify({ ready: true }) + '\n');
      await sleep(Number(o.seconds ?? 60) * 1000);
      await boss.offWork(o.queue, { wait: true });
      result = { handled };
    } else {
      throw new Error(`unknown command ${command}`);
    }
  } finally {
    await boss.stop({ graceful: false, timeout: 5000 });
  }
  if (errors.length) throw errors[0];
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch(err => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
