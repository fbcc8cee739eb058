#!/usr/bin/env node
// The Node side of zeke's mixed-fleet test (tests/interop/test_mixed_fleet.py), pg-boss 12.38.1.
//
//   node tests/node/fleet.mjs producer <connectionString> --seconds n [--tick ms]
//   node tests/node/fleet.mjs supervisor <connectionString>
//
// producer: for --seconds, every --tick ms (default 250), sends the fleet's mix to the queues the
// Python workers consume (plain jobs, throttled and debounced singletons, jobs that fail once then
// succeed, jobs that always fail into a dead letter queue, jobs cancelled before they start, jobs
// of three groups) and works `fleet-node` (jobs Python sends) with a Node worker. Once the sending
// is over it prints one JSON line {"summary": {...ids by kind...}} and goes on working until
// SIGTERM, then prints {"stopped": true, "errors": n}.
// supervisor: pg-boss with supervise and schedule on (short intervals) until SIGTERM, then prints
// {"stopped": true, "errors": n}. Neither migrates: the schema is installed before they start.
import { setTimeout as sleep } from 'node:timers/promises';
import { PgBoss } from 'pg-boss';

function options(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  return out;
}

function emit(object) {
  process.stdout.write(JSON.stringify(object) + '\n');
}

function untilSignal() {
  return new Promise(resolve => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
}

async function produce(boss, seconds, tick) {
  const ids = { plain: [], single: [], debounce: [], flaky: [], doomed: [], cancelled: [], grouped: [] };
  let dropped = 0;
  const keep = (kind, id) => { if (id) ids[kind].push(id); else dropped++; };
  const end = Date.now() + seconds * 1000;
  for (let i = 0; Date.now() < end; i++) {
    const started = Date.now();
    keep('plain', await boss.send('fleet-plain', { n: i }));
    const group = 'abc'[i % 3];
    keep('grouped', await boss.send('fleet-grouped', { group, hold: 0.1, n: i }, { group: { id: group } }));
    if (i % 2 === 0) {
      const single = await boss.send('fleet-single', { n: i, kind: 'throttle' }, { singletonKey: 'throttle', singletonSeconds: 5 });
      if (single) ids.single.push(single);
      const debounced = await boss.send('fleet-single', { n: i, kind: 'debounce' },
        { singletonKey: 'debounce', singletonSeconds: 5, singletonNextSlot: true });
      if (debounced) ids.debounce.push(debounced);
    }
    if (i % 5 === 0) keep('flaky', await boss.send('fleet-flaky', { fail: 1, n: i }));
    if (i % 10 === 0) keep('doomed', await boss.send('fleet-doomed', { n: i }));
    if (i % 7 === 0) {
      const id = await boss.send('fleet-plain', { n: i, kind: 'cancel' }, { startAfter: 3600 });
      await boss.cancel('fleet-plain', id);
      ids.cancelled.push(id);
    }
    await sleep(Math.max(0, tick - (Date.now() - started)));
  }
  return { ...ids, dropped };
}

async function main() {
  const [role, connectionString, ...rest] = process.argv.slice(2);
  const opts = options(rest);
  const supervisor = role === 'supervisor';
  const boss = new PgBoss({
    connectionString,
    schema: 'pgboss',
    max: 5,
    migrate: false,
    supervise: supervisor,
    schedule: supervisor,
    superviseIntervalSeconds: 5,
    monitorIntervalSeconds: 5,
    cronMonitorIntervalSeconds: 5,
    cronWorkerIntervalSeconds: 1
  });
  let errors = 0;
  boss.on('error', err => {
    errors++;
    process.stderr.write(`pg-boss error: ${err?.stack ?? err}\n`);
  });
  await boss.start();
  const stop = untilSignal();
  if (role === 'producer') {
    await boss.work('fleet-node', { pollingIntervalSeconds: 0.5 }, async ([job]) => ({ node: job.data.n }));
    const summary = await produce(boss, Number(opts.seconds ?? 30), Number(opts.tick ?? 250));
    emit({ summary });
  } else if (!supervisor) {
    throw new Error(`unknown role ${role}`);
  }
  emit({ ready: role });
  await stop;
  await boss.stop({ graceful: true, timeout: 10000 });
  emit({ stopped: true, errors });
}

main().catch(err => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
