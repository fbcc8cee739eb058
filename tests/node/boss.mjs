#!/usr/bin/env node
// Drive one Node pg-boss release against a database, for zeke's interop tests.
//
//   node tests/node/boss.mjs <release> <connectionString> <schema> <command> [--option value ...]
//
// <release> is a key of RELEASES below (an npm alias installed by package.json in this folder).
// Every command prints one JSON object on stdout and exits 0; any failure prints the error on
// stderr and exits 1, so a Python test can assert on either.
//
// Commands:
//   start    start() then stop(); prints {"schemaVersion": n}
//   check    like start, but with migrate: false (pg-boss's check(): versions must be equal)
//   smoke    createQueue/send/fetch/complete/getJobById on --queue (default "zeke-smoke")
//   drift    detectSchemaDrift() (12.38 only): pg-boss's own comparison of the live catalog
//   plans    the install SQL this release would run (no database access; connectionString ignored)
//   lockkey  the SQL expression of pg-boss's advisory lock key for --key (default "")
//
// Options: --migrate true|false, --supervise true|false, --schedule true|false (defaults: pg-boss's),
// --queue name, --key text, --policy name, --partition true|false.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const RELEASES = {
  '12.38': 'pg-boss',
  '12.38.1': 'pg-boss',
  '12.34': 'pg-boss-12-34',
  '12.34.0': 'pg-boss-12-34',
  '12.5': 'pg-boss-12-5',
  '12.5.4': 'pg-boss-12-5'
};

const require = createRequire(import.meta.url);

function packageDir(release) {
  const name = RELEASES[release];
  if (!name) throw new Error(`unknown pg-boss release ${release}; known: ${Object.keys(RELEASES).join(', ')}`);
  return require.resolve(`${name}/package.json`).replace(/package\.json$/, '');
}

async function load(release, file) {
  return import(pathToFileURL(packageDir(release) + file).href);
}

function parseOptions(argv) {
  const options = {};
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    if (!flag.startsWith('--') || i + 1 >= argv.length) throw new Error(`bad option ${flag}`);
    const value = argv[i + 1];
    options[flag.slice(2)] = value === 'true' ? true : value === 'false' ? false : value;
  }
  return options;
}

async function withBoss(release, connectionString, schema, options, body) {
  const { PgBoss, default: fallback } = await load(release, 'dist/index.js');
  const Boss = PgBoss ?? fallback;
  const config = { connectionString, schema, max: 3 };
  for (const key of ['migrate', 'supervise', 'schedule']) {
    if (key in options) config[key] = options[key];
  }
  const boss = new Boss(config);
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
  async start(release, url, schema, options) {
    return withBoss(release, url, schema, options, async boss => ({ schemaVersion: await boss.schemaVersion() }));
  },

  async check(release, url, schema, options) {
    return COMMANDS.start(release, url, schema, { ...options, migrate: false });
  },

  async smoke(release, url, schema, options) {
    const queue = options.queue ?? 'zeke-smoke';
    return withBoss(release, url, schema, options, async boss => {
      await boss.createQueue(queue, { policy: options.policy ?? 'standard', partition: options.partition ?? false });
      const id = await boss.send(queue, { hello: 'python' });
      const [job] = await boss.fetch(queue);
      if (!job || job.id !== id) throw new Error(`fetched ${JSON.stringify(job)}, expected job ${id}`);
      await boss.complete(queue, id, { ok: true });
      const done = await boss.getJobById(queue, id);
      return { id, state: done.state, output: done.output, schemaVersion: await boss.schemaVersion() };
    });
  },

  async drift(release, url, schema, options) {
    return withBoss(release, url, schema, { supervise: false, schedule: false, ...options }, boss =>
      boss.detectSchemaDrift());
  },

  async plans(release, _url, schema) {
    const { default: Contractor } = await load(release, 'dist/contractor.js');
    return { sql: Contractor.constructionPlans(schema) };
  },

  async lockkey(release, _url, schema, options) {
    const plans = await load(release, 'dist/plans.js');
    return { sql: plans.advisoryLockKey(schema, options.key ?? '') };
  }
};

async function main() {
  const [release, url, schema, command, ...rest] = process.argv.slice(2);
  const run = COMMANDS[command];
  if (!run) throw new Error(`usage: boss.mjs <release> <connectionString> <schema> <${Object.keys(COMMANDS).join('|')}> [--option value ...]`);
  const result = await run(release, url, schema, parseOptions(rest));
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch(err => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
