#!/usr/bin/env node
// A Node pg-boss 12.38.1 instance with cron on, driven by pg-boss's TestClock, for zeke's mixed-beat test.
//
//   node tests/node/cron_clock.mjs <connectionString> <schema> <queue> [--option value ...]
//
// The TestClock overrides <schema>.job_now() for every session that sets pgboss.test_clock = on, so
// Python beats started with PGOPTIONS="-c pgboss.test_clock=on" read the same clock as this instance.
// The script schedules <queue> every minute, then moves the clock --steps times by --step ms. On even
// steps it fires its own timers at once (this instance claims the cron interval); on odd steps it
// waits --gap ms first (a Python beat claims it), so each occurrence is seen by passes of both sides.
//
// Prints one JSON object per line on stdout: {"ready": ms} once scheduled, {"step": i, "now": ms}
// after each step, {"done": true, "errors": n} at the end. Exits 1 on any pg-boss error.
//
// Options: --start ms (default: the next minute + 10 s, one day ahead), --step ms (20000),
// --steps n (24), --gap ms (1000), --settle ms (500), --cron expr ("* * * * *"), --go path (wait
// for this file to exist before the first step, so the Python beats can start on the test clock).
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { PgBoss, TestClock } from 'pg-boss';

function parseOptions(argv) {
  const options = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) throw new Error(`bad option ${argv[i]}`);
    options[argv[i].slice(2)] = argv[i + 1];
  }
  return options;
}

function emit(object) {
  process.stdout.write(JSON.stringify(object) + '\n');
}

async function main() {
  const [connectionString, schema, queue, ...rest] = process.argv.slice(2);
  if (!queue) throw new Error('usage: cron_clock.mjs <connectionString> <schema> <queue> [--option value ...]');
  const options = parseOptions(rest);
  const minute = 60_000;
  const start = Number(options.start ?? Math.floor(Date.now() / minute) * minute + 24 * 60 * minute + 10_000);
  const step = Number(options.step ?? 20_000);
  const steps = Number(options.steps ?? 24);
  const gap = Number(options.gap ?? 1000);
  const settle = Number(options.settle ?? 500);

  const clock = new TestClock(start);
  const boss = new PgBoss({
    connectionString,
    schema,
    clock,
    max: 4,
    supervise: false,
    schedule: true,
    cronMonitorIntervalSeconds: 1,
    cronWorkerIntervalSeconds: 1
  });
  const errors = [];
  boss.on('error', err => {
    errors.push(err);
    process.stderr.write(`pg-boss error: ${err.stack ?? err}\n`);
  });
  await boss.start();
  await boss.createQueue(queue);
  await boss.schedule(queue, options.cron ?? '* * * * *', { from: 'node' });
  emit({ ready: clock.now() });
  if (options.go) {
    while (!existsSync(options.go)) await sleep(50);
  }

  let now = start;
  for (let i = 0; i < steps; i++) {
    now += step;
    await clock.setTime(now);
    if (i % 2 === 0) {
      await clock.tick(0); // our overdue cron and send-it timers fire first: this instance claims
      await sleep(gap);
    } else {
      await sleep(gap); // a Python beat claims this interval
      await clock.tick(0);
    }
    await sleep(settle);
    emit({ step: i, now });
  }
  await boss.stop({ graceful: true, timeout: 5000 });
  emit({ done: true, errors: errors.length });
  if (errors.length) process.exit(1);
}

main().catch(err => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
