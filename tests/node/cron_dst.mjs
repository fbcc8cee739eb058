#!/usr/bin/env node
// pg-boss 12.38.1's own reading of cron schedules, in process (no database), for zeke's DST tests.
//
//   node tests/node/cron_dst.mjs '<JSON list of cases>'
//
// A case is {"cron", "tz", "from", "until", "pass"}: ISO instants and a pass interval in seconds.
// For each case prints, in one JSON list on stdout:
//   "preview": previewSchedule(cron, {tz, from, count}) up to `until` (the forward walk);
//   "fired":   the occurrences the cron pass would send, as pg-boss's Timekeeper reads them when a
//              pass runs every `pass` seconds from `from` to `until` (its due window, 60 s);
//   "latest":  every fifth pass instant, the latest occurrence at or before it (no lower bound).
import { PgBoss } from 'pg-boss';
import Timekeeper from 'pg-boss/dist/timekeeper.js';

const cases = JSON.parse(process.argv[2] ?? '[]');
// Never started: previewSchedule and the pass's reads are pure cron-parser arithmetic.
const boss = new PgBoss({ connectionString: 'postgres://localhost/unused' });
const keeper = new Timekeeper(null, null, {});

const results = cases.map(({ cron, tz, from, until, pass }) => {
  const start = new Date(from).getTime();
  const end = new Date(until).getTime();
  const preview = [];
  let cursor = new Date(start);
  while (preview.length < 1000) {
    const [next] = boss.previewSchedule(cron, { tz, from: cursor, count: 1 });
    if (!next || next.getTime() > end) break;
    preview.push(next.toISOString());
    cursor = next;
  }
  const fired = new Set();
  const latest = [];
  for (let now = start, i = 0; now <= end; now += pass * 1000, i++) {
    for (const occurrence of keeper.readOccurrences(cron, 'cron', tz, now)) fired.add(occurrence.toISOString());
    if (i % 5 !== 0) continue;
    const found = keeper.latestOccurrenceBefore(cron, 'cron', tz, new Date(0), new Date(now));
    latest.push(found ? found.toISOString() : null);
  }
  return { preview, fired: [...fired].sort(), latest };
});
process.stdout.write(JSON.stringify(results) + '\n');
