#!/usr/bin/env node
// Node pg-boss as the other side of tests/interop/transport/test_verbs.py: one public PgBoss method
// called with JSON arguments, its result printed as JSON.
//
//   node tests/node/verbs.mjs <release> <connectionString> <schema> <method> '<JSON array of arguments>'
//
// <release>: 12.38 | 12.5 (the npm aliases installed by package.json in this folder). pg-boss starts
// with migrate: false (an existing schema is never altered), supervise: false and schedule: false, so
// only the test moves jobs. On success one JSON object {"result": ...} on stdout and exit 0; a
// failure prints {"error": message} on stdout and exits 2, so tests can read Node's refusals.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const RELEASES = { '12.38': 'pg-boss', '12.5': 'pg-boss-12-5' };
const require = createRequire(import.meta.url);

async function loadBoss(release) {
  const name = RELEASES[release];
  if (!name) throw new Error(`unknown pg-boss release ${release}; known: ${Object.keys(RELEASES).join(', ')}`);
  const dir = require.resolve(`${name}/package.json`).replace(/package\.json$/, '');
  const mod = await import(pathToFileURL(dir + 'dist/index.js').href);
  return mod.PgBoss ?? mod.default;
}

async function main() {
  const [release, url, schema, method, args = '[]'] = process.argv.slice(2);
  const Boss = await loadBoss(release);
  const boss = new Boss({ connectionString: url, schema, max: 3, migrate: false, supervise: false, schedule: false });
  const errors = [];
  boss.on('error', err => errors.push(err));
  await boss.start();
  let out;
  try {
    if (typeof boss[method] !== 'function') throw new Error(`PgBoss has no method ${method}`);
    out = { result: (await boss[method](...JSON.parse(args))) ?? null };
  } catch (err) {
    out = { error: String(err?.message ?? err) };
  } finally {
    await boss.stop({ graceful: false, timeout: 5000 });
  }
  if (errors.length) throw errors[0];
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(out.error === undefined ? 0 : 2);
}

main().catch(err => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
