#!/usr/bin/env node
// Node pg-boss 12.38 on the same queues as zeke's Celery workers, for the broker interop tests.
//
//   node tests/node/celery_interop.mjs <connectionString> <schema> send <queue> <json data>
//       boss.send(queue, data); prints {"id": "..."}
//   node tests/node/celery_interop.mjs <connectionString> <schema> work <queue> <count> <timeoutMs>
//       boss.work(queue) until <count> jobs were handled (each completed with {"handledBy": "node"});
//       prints {"jobs": [{"id", "data"}...]}
//
// Exits 1 with the error on stderr on failure (including a timeout).
import { PgBoss } from 'pg-boss';

async function withBoss(url, schema, body) {
  const boss = new PgBoss({ connectionString: url, schema, max: 3, supervise: false, schedule: false, migrate: false });
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
  const [url, schema, command, ...rest] = process.argv.slice(2);
  const run = COMMANDS[command];
  if (!run) throw new Error(`usage: celery_interop.mjs <url> <schema> <${Object.keys(COMMANDS).join('|')}> ...`);
  process.stdout.write(JSON.stringify(await run(url, schema, ...rest)) + '\n');
}

main().catch(err => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
