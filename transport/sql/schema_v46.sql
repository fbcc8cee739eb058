-- pg-boss schema version 46: the catalog Node pg-boss 12.38.0 builds on an empty database.
--
-- Written for zeke from the catalog pg-boss leaves behind (verified object by object by
-- tests/integration/transport/test_schema.py), not copied from pg-boss. Every name, column order,
-- type, default, constraint, index and function signature must stay identical to Node's, because
-- Node pg-boss runs its own statements (and later migrations) against whatever this creates.
--
-- {schema} is replaced by the quoted schema identifier before execution. The file is executed as
-- one multi-statement string without bind parameters, so '%' (format() patterns) and '{}' (an empty
-- array literal) are plain SQL here. It runs inside zeke's install transaction, which holds
-- pg-boss's install advisory lock (transport.schema.install).

CREATE SCHEMA IF NOT EXISTS {schema};

-- Label order is load-bearing: pg-boss compares states with < and >.
CREATE TYPE {schema}.job_state AS ENUM ('created', 'retry', 'active', 'completed', 'cancelled', 'failed');

-- The one clock every pg-boss statement reads. A single-statement SQL function so the planner
-- inlines it; pg-boss's TestClock replaces the body in tests.
CREATE FUNCTION {schema}.job_now()
RETURNS timestamp with time zone
LANGUAGE sql
STABLE
AS $fn$ SELECT pg_catalog.now(); $fn$;

CREATE TABLE {schema}.version (
  version            integer PRIMARY KEY,
  cron_on            timestamp with time zone,
  bam_on             timestamp with time zone,
  flow_on            timestamp with time zone,
  reindex_on         timestamp with time zone,
  monitor_backoff_on timestamp with time zone
);

CREATE TABLE {schema}.queue (
  name                 text NOT NULL,
  policy               text NOT NULL,
  retry_limit          integer NOT NULL,
  retry_delay          integer NOT NULL,
  retry_backoff        boolean NOT NULL,
  retry_delay_max      integer,
  expire_seconds       integer NOT NULL,
  retention_seconds    integer NOT NULL,
  deletion_seconds     integer NOT NULL,
  -- A column-level CHECK naming two columns gets PostgreSQL's generic name queue_check.
  dead_letter          text REFERENCES {schema}.queue (name) CHECK (dead_letter IS DISTINCT FROM name),
  partition            boolean NOT NULL,
  table_name           text NOT NULL,
  deferred_count       integer NOT NULL DEFAULT 0,
  blocked_count        integer NOT NULL DEFAULT 0,
  queued_count         integer NOT NULL DEFAULT 0,
  ready_count          integer NOT NULL DEFAULT 0,
  warning_queued       integer NOT NULL DEFAULT 0,
  active_count         integer NOT NULL DEFAULT 0,
  failed_count         integer NOT NULL DEFAULT 0,
  total_count          integer NOT NULL DEFAULT 0,
  retained_count       integer,
  retained_on          timestamp with time zone,
  created_delta        integer NOT NULL DEFAULT 0,
  completed_delta      integer NOT NULL DEFAULT 0,
  failed_delta         integer NOT NULL DEFAULT 0,
  delta_on             timestamp with time zone,
  delta_seconds        integer,
  wait_bins            integer[],
  run_bins             integer[],
  ready_oldest_seconds integer,
  ready_history        integer[] NOT NULL DEFAULT '{}',
  heartbeat_seconds    integer,
  notify               boolean NOT NULL DEFAULT false,
  singletons_active    text[],
  monitor_claim_on     timestamp with time zone,
  monitor_on           timestamp with time zone,
  maintain_on          timestamp with time zone,
  created_on           timestamp with time zone NOT NULL DEFAULT now(),
  updated_on           timestamp with time zone NOT NULL DEFAULT now(),
  PRIMARY KEY (name)
);

CREATE TABLE {schema}.schedule (
  name        text REFERENCES {schema}.queue ON DELETE CASCADE,
  key         text NOT NULL DEFAULT '',
  kind        text NOT NULL DEFAULT 'cron' CHECK (kind IN ('cron', 'rrule')),
  cron        text NOT NULL,
  timezone    text DEFAULT 'UTC',
  data        jsonb,
  options     jsonb,
  created_on  timestamp with time zone NOT NULL DEFAULT now(),
  updated_on  timestamp with time zone NOT NULL DEFAULT now(),
  last_job_id uuid,
  PRIMARY KEY (name, key)
);

CREATE TABLE {schema}.subscription (
  event      text NOT NULL,
  name       text NOT NULL REFERENCES {schema}.queue ON DELETE CASCADE,
  created_on timestamp with time zone NOT NULL DEFAULT now(),
  updated_on timestamp with time zone NOT NULL DEFAULT now(),
  PRIMARY KEY (event, name)
);

-- pg-boss's queue of deferred (CREATE INDEX CONCURRENTLY) migration steps. clock_timestamp(), not
-- now(), so several rows queued by one transaction keep their order.
CREATE TABLE {schema}.bam (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name         text NOT NULL,
  version      integer NOT NULL,
  status       text NOT NULL DEFAULT 'pending',
  queue        text,
  table_name   text NOT NULL,
  command      text NOT NULL,
  error        text,
  created_on   timestamp with time zone NOT NULL DEFAULT clock_timestamp(),
  started_on   timestamp with time zone,
  completed_on timestamp with time zone
);

-- Retarget a statement written against {schema}.job and index names job_iN at another job table:
-- ".job" becomes ".<table>" (quoted as needed) and "job_iN" becomes "<table>_iN". pg-boss's
-- migrations call this (through job_table_run*), so it keeps pg-boss's format() semantics.
CREATE FUNCTION {schema}.job_table_format(command text, table_name text)
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $fn$
  SELECT pg_catalog.format(
    pg_catalog.regexp_replace(
      pg_catalog.regexp_replace(command, '\yjob_i(\d+)', '%1$s_i\1', 'g'),
      '\.job\y', '.%1$I', 'g'),
    table_name)
$fn$;

-- Run a job-table statement on one table (named, or the table of queue_name), or, given neither,
-- on job_common and then every partitioned queue's table.
CREATE FUNCTION {schema}.job_table_run(command text, tbl_name text DEFAULT NULL, queue_name text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
  part_table text;
BEGIN
  IF queue_name IS NOT NULL THEN
    -- An unknown queue leaves tbl_name NULL, which means "every job table" below.
    SELECT q.table_name INTO tbl_name FROM {schema}.queue q WHERE q.name = queue_name;
  END IF;

  IF tbl_name IS NOT NULL THEN
    EXECUTE {schema}.job_table_format(command, tbl_name);
    RETURN;
  END IF;

  EXECUTE {schema}.job_table_format(command, 'job_common');
  FOR part_table IN SELECT q.table_name FROM {schema}.queue q WHERE q.partition = true LOOP
    EXECUTE {schema}.job_table_format(command, part_table);
  END LOOP;
END
$fn$;

-- Like job_table_run, but queue the statements in bam for a Node instance to run later.
CREATE FUNCTION {schema}.job_table_run_async(command_name text, version integer, command text,
  tbl_name text DEFAULT NULL, queue_name text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
  IF queue_name IS NOT NULL THEN
    SELECT q.table_name INTO tbl_name FROM {schema}.queue q WHERE q.name = queue_name;
  END IF;

  IF tbl_name IS NOT NULL THEN
    INSERT INTO {schema}.bam (name, version, status, queue, table_name, command)
    VALUES (command_name, version, 'pending', queue_name, tbl_name, {schema}.job_table_format(command, tbl_name));
    RETURN;
  END IF;

  -- job_common first: bam runs rows in created_on order.
  INSERT INTO {schema}.bam (name, version, status, queue, table_name, command)
  VALUES (command_name, version, 'pending', NULL, 'job_common', {schema}.job_table_format(command, 'job_common'));

  INSERT INTO {schema}.bam (name, version, status, queue, table_name, command)
  SELECT command_name, version, 'pending', q.name, q.table_name, {schema}.job_table_format(command, q.table_name)
  FROM {schema}.queue q
  WHERE q.partition = true;
END
$fn$;

-- Rows are routed by queue name: a partitioned queue gets its own LIST partition, every other
-- queue lives in the DEFAULT partition job_common.
CREATE TABLE {schema}.job (
  id                   uuid NOT NULL DEFAULT gen_random_uuid(),
  name                 text NOT NULL,
  priority             integer NOT NULL DEFAULT 0,
  data                 jsonb,
  state                {schema}.job_state NOT NULL DEFAULT 'created',
  retry_limit          integer NOT NULL DEFAULT 2,
  retry_count          integer NOT NULL DEFAULT 0,
  retry_delay          integer NOT NULL DEFAULT 0,
  retry_backoff        boolean NOT NULL DEFAULT false,
  retry_delay_max      integer,
  expire_seconds       integer NOT NULL DEFAULT 900,
  deletion_seconds     integer NOT NULL DEFAULT 604800,
  singleton_key        text,
  singleton_on         timestamp without time zone,
  group_id             text,
  group_tier           text,
  start_after          timestamp with time zone NOT NULL DEFAULT now(),
  created_on           timestamp with time zone NOT NULL DEFAULT now(),
  started_on           timestamp with time zone,
  completed_on         timestamp with time zone,
  -- 1209600 seconds, not '14 days': pg-boss stores the interval as 336 hours.
  keep_until           timestamp with time zone NOT NULL DEFAULT now() + interval '1209600 seconds',
  output               jsonb,
  dead_letter          text,
  policy               text,
  heartbeat_on         timestamp with time zone,
  heartbeat_seconds    integer,
  blocked              boolean NOT NULL DEFAULT false,
  blocking             boolean NOT NULL DEFAULT false,
  pending_dependencies integer NOT NULL DEFAULT 0,
  source_name          text,
  source_id            uuid,
  source_created_on    timestamp with time zone,
  source_retry_count   integer,
  source_output        jsonb,
  source_root_id       uuid,
  trace_context        jsonb,
  upsert_by_key        boolean
) PARTITION BY LIST (name);

ALTER TABLE {schema}.job ADD PRIMARY KEY (name, id);

-- The default partition is built as a plain table with its keys and indexes, then attached, so its
-- primary key is named job_common_pkey and becomes a child of job_pkey.
CREATE TABLE {schema}.job_common (LIKE {schema}.job INCLUDING GENERATED INCLUDING DEFAULTS);

ALTER TABLE {schema}.job_common ADD PRIMARY KEY (name, id);
-- Deferred, so a job and the queue it names may be written in either order within a transaction.
ALTER TABLE {schema}.job_common ADD CONSTRAINT q_fkey FOREIGN KEY (name)
  REFERENCES {schema}.queue (name) ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE {schema}.job_common ADD CONSTRAINT dlq_fkey FOREIGN KEY (dead_letter)
  REFERENCES {schema}.queue (name) ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED;

-- Policy indexes: job_common serves every policy, so it carries all of them. They filter on the
-- job row's own policy column.
CREATE UNIQUE INDEX job_common_i1 ON {schema}.job_common (name, COALESCE(singleton_key, ''))
  WHERE state = 'created' AND policy = 'short';
CREATE UNIQUE INDEX job_common_i2 ON {schema}.job_common (name, COALESCE(singleton_key, ''))
  WHERE state = 'active' AND policy = 'singleton';
CREATE UNIQUE INDEX job_common_i3 ON {schema}.job_common (name, state, COALESCE(singleton_key, ''))
  WHERE state <= 'active' AND policy = 'stately';
CREATE UNIQUE INDEX job_common_i6 ON {schema}.job_common (name, COALESCE(singleton_key, ''))
  WHERE state <= 'active' AND policy = 'exclusive';
CREATE UNIQUE INDEX job_common_i8 ON {schema}.job_common (name, singleton_key)
  WHERE state IN ('active', 'retry', 'failed') AND policy = 'key_strict_fifo';
CREATE INDEX job_common_i10 ON {schema}.job_common (name, singleton_key, state DESC, created_on, id)
  INCLUDE (start_after)
  WHERE state < 'active' AND NOT blocked AND policy = 'key_strict_fifo';
ALTER TABLE {schema}.job_common ADD CONSTRAINT job_key_strict_fifo_singleton_key_check
  CHECK (NOT (policy = 'key_strict_fifo' AND singleton_key IS NULL));

-- Indexes every job table has, whatever its policy.
CREATE UNIQUE INDEX job_common_i4 ON {schema}.job_common (name, singleton_on, COALESCE(singleton_key, ''))
  WHERE state <> 'cancelled' AND singleton_on IS NOT NULL;
CREATE INDEX job_common_i11 ON {schema}.job_common (name, priority DESC, created_on, start_after)
  WHERE state < 'active' AND NOT blocked;
CREATE INDEX job_common_i7 ON {schema}.job_common (name, group_id)
  WHERE state = 'active' AND group_id IS NOT NULL;
CREATE INDEX job_common_i9 ON {schema}.job_common (name, id)
  WHERE blocking AND state = 'completed';
CREATE INDEX job_common_i12 ON {schema}.job_common (source_root_id)
  WHERE source_root_id IS NOT NULL;
CREATE UNIQUE INDEX job_common_i13 ON {schema}.job_common (name, singleton_key)
  WHERE state = 'created' AND upsert_by_key;
CREATE INDEX job_common_i14 ON {schema}.job_common (name, state, blocked, start_after)
  WHERE state IN ('created', 'retry', 'active', 'failed');
CREATE INDEX job_common_i15 ON {schema}.job_common (name, created_on);
CREATE INDEX job_common_i16 ON {schema}.job_common (name, completed_on)
  WHERE completed_on IS NOT NULL;
CREATE INDEX job_common_i17 ON {schema}.job_common (name, singleton_key, created_on)
  WHERE state < 'active' AND singleton_key IS NOT NULL;

ALTER TABLE {schema}.job ATTACH PARTITION {schema}.job_common DEFAULT;

CREATE TABLE {schema}.warning (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  type       text NOT NULL,
  message    text NOT NULL,
  data       jsonb,
  created_on timestamp with time zone NOT NULL DEFAULT now()
);

CREATE INDEX warning_i1 ON {schema}.warning (created_on DESC);

CREATE TABLE {schema}.queue_stats (
  id                   uuid NOT NULL DEFAULT gen_random_uuid(),
  name                 text NOT NULL,
  deferred_count       integer NOT NULL DEFAULT 0,
  queued_count         integer NOT NULL DEFAULT 0,
  ready_count          integer NOT NULL DEFAULT 0,
  active_count         integer NOT NULL DEFAULT 0,
  failed_count         integer NOT NULL DEFAULT 0,
  total_count          integer NOT NULL DEFAULT 0,
  created_delta        integer,
  completed_delta      integer,
  failed_delta         integer,
  delta_seconds        integer,
  delta_on             timestamp with time zone,
  wait_bins            integer[],
  run_bins             integer[],
  ready_oldest_seconds integer,
  captured_on          timestamp with time zone NOT NULL DEFAULT now(),
  PRIMARY KEY (id, captured_on)
) PARTITION BY RANGE (captured_on);

-- Before the partitions, so each partition's copy gets PostgreSQL's generated name as in pg-boss.
CREATE INDEX queue_stats_i1 ON {schema}.queue_stats (name, captured_on DESC)
  INCLUDE (deferred_count, queued_count, ready_count, active_count, failed_count, total_count);

-- One partition per UTC day, named queue_stats_YYYYMMDD; pg-boss creates today's and tomorrow's at
-- install and keeps them coming during supervision. Bounds are explicit UTC so the session time
-- zone cannot shift them.
DO $do$
DECLARE
  utc_day date;
BEGIN
  FOR offset_days IN 0..1 LOOP
    utc_day := ({schema}.job_now() AT TIME ZONE 'UTC')::date + offset_days;
    EXECUTE pg_catalog.format(
      'CREATE TABLE IF NOT EXISTS {schema}.%I PARTITION OF {schema}.queue_stats FOR VALUES FROM (%L) TO (%L)',
      'queue_stats_' || to_char(utc_day, 'YYYYMMDD'),
      to_char(utc_day, 'YYYY-MM-DD') || ' 00:00:00+00',
      to_char(utc_day + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
  END LOOP;
END
$do$;

CREATE TABLE {schema}.job_dependency (
  child_name  text NOT NULL,
  child_id    uuid NOT NULL,
  parent_name text NOT NULL,
  parent_id   uuid NOT NULL,
  PRIMARY KEY (child_name, child_id, parent_name, parent_id)
);

CREATE INDEX job_dep_parent_idx ON {schema}.job_dependency (parent_name, parent_id);

-- One row per running Node PgBoss object (its registry); zeke does not register here.
CREATE TABLE {schema}.instance (
  id                   uuid PRIMARY KEY,
  name                 text,
  host                 text NOT NULL,
  pid                  integer NOT NULL,
  version              text NOT NULL,
  node_version         text NOT NULL,
  application_name     text,
  heartbeat_seconds    integer NOT NULL,
  supervise            boolean NOT NULL,
  schedule             boolean NOT NULL,
  migrate              boolean NOT NULL,
  persist_queue_stats  boolean NOT NULL,
  persist_warnings     boolean NOT NULL,
  pool_max             integer,
  pool_total           integer,
  pool_idle            integer,
  pool_waiting         integer,
  workers              jsonb NOT NULL DEFAULT '[]'::jsonb,
  metrics              jsonb,
  config               jsonb NOT NULL DEFAULT '{}'::jsonb,
  crash_restarts       integer NOT NULL DEFAULT 0,
  crash_restarts_since timestamp with time zone,
  started_on           timestamp with time zone NOT NULL DEFAULT now(),
  heartbeat_on         timestamp with time zone NOT NULL DEFAULT now(),
  stopped_on           timestamp with time zone
);

-- Create a queue from pg-boss's option names (retryLimit, expireInSeconds, partition, ...).
-- Idempotent: an existing queue is left untouched. Only a newly created queue with
-- "partition": true gets a table of its own, named 'j' || hex(sha224(name)), carrying the common
-- indexes plus the one policy index its policy needs, attached as the LIST partition of its name.
CREATE FUNCTION {schema}.create_queue(queue_name text, options jsonb)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
  own_table boolean := coalesce(options ->> 'partition' = 'true', false);
  part_table text := CASE WHEN coalesce(options ->> 'partition' = 'true', false)
                      THEN 'j' || encode(sha224(queue_name::bytea), 'hex')
                      ELSE 'job_common' END;
  created boolean;
  ddl_text text;
BEGIN
  INSERT INTO {schema}.queue AS q (
    name, policy, retry_limit, retry_delay, retry_backoff, retry_delay_max, expire_seconds,
    retention_seconds, deletion_seconds, warning_queued, dead_letter, partition, table_name,
    heartbeat_seconds, notify, created_on, updated_on)
  VALUES (
    queue_name,
    options ->> 'policy',
    coalesce((options ->> 'retryLimit')::int, 2),
    coalesce((options ->> 'retryDelay')::int, 0),
    coalesce((options ->> 'retryBackoff')::bool, false),
    (options ->> 'retryDelayMax')::int,
    coalesce((options ->> 'expireInSeconds')::int, 900),
    coalesce((options ->> 'retentionSeconds')::int, 1209600),
    coalesce((options ->> 'deleteAfterSeconds')::int, 604800),
    coalesce((options ->> 'warningQueueSize')::int, 0),
    options ->> 'deadLetter',
    coalesce((options ->> 'partition')::bool, false),
    part_table,
    (options ->> 'heartbeatSeconds')::int,
    coalesce((options ->> 'notify')::bool, false),
    {schema}.job_now(),
    {schema}.job_now())
  ON CONFLICT DO NOTHING
  RETURNING true INTO created;

  IF created IS NULL OR NOT own_table THEN
    RETURN;
  END IF;

  EXECUTE pg_catalog.format('CREATE TABLE {schema}.%I (LIKE {schema}.job INCLUDING DEFAULTS)', part_table);

  -- Written against job / job_iN like pg-boss's migrations, retargeted by job_table_format.
  FOREACH ddl_text IN ARRAY ARRAY[
    $ddl$ALTER TABLE {schema}.job ADD PRIMARY KEY (name, id)$ddl$,
    $ddl$ALTER TABLE {schema}.job ADD CONSTRAINT q_fkey FOREIGN KEY (name) REFERENCES {schema}.queue (name) ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED$ddl$,
    $ddl$ALTER TABLE {schema}.job ADD CONSTRAINT dlq_fkey FOREIGN KEY (dead_letter) REFERENCES {schema}.queue (name) ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED$ddl$,
    $ddl$CREATE INDEX job_i11 ON {schema}.job (name, priority DESC, created_on, start_after) WHERE state < 'active' AND NOT blocked$ddl$,
    $ddl$CREATE UNIQUE INDEX job_i4 ON {schema}.job (name, singleton_on, COALESCE(singleton_key, '')) WHERE state <> 'cancelled' AND singleton_on IS NOT NULL$ddl$,
    $ddl$CREATE INDEX job_i7 ON {schema}.job (name, group_id) WHERE state = 'active' AND group_id IS NOT NULL$ddl$,
    $ddl$CREATE INDEX job_i9 ON {schema}.job (name, id) WHERE blocking AND state = 'completed'$ddl$,
    $ddl$CREATE INDEX job_i12 ON {schema}.job (source_root_id) WHERE source_root_id IS NOT NULL$ddl$,
    $ddl$CREATE UNIQUE INDEX job_i13 ON {schema}.job (name, singleton_key) WHERE state = 'created' AND upsert_by_key$ddl$,
    $ddl$CREATE INDEX job_i14 ON {schema}.job (name, state, blocked, start_after) WHERE state IN ('created', 'retry', 'active', 'failed')$ddl$,
    $ddl$CREATE INDEX job_i15 ON {schema}.job (name, created_on)$ddl$,
    $ddl$CREATE INDEX job_i16 ON {schema}.job (name, completed_on) WHERE completed_on IS NOT NULL$ddl$,
    $ddl$CREATE INDEX job_i17 ON {schema}.job (name, singleton_key, created_on) WHERE state < 'active' AND singleton_key IS NOT NULL$ddl$
  ] || CASE options ->> 'policy'
    WHEN 'short' THEN ARRAY[
      $ddl$CREATE UNIQUE INDEX job_i1 ON {schema}.job (name, COALESCE(singleton_key, '')) WHERE state = 'created' AND policy = 'short'$ddl$]
    WHEN 'singleton' THEN ARRAY[
      $ddl$CREATE UNIQUE INDEX job_i2 ON {schema}.job (name, COALESCE(singleton_key, '')) WHERE state = 'active' AND policy = 'singleton'$ddl$]
    WHEN 'stately' THEN ARRAY[
      $ddl$CREATE UNIQUE INDEX job_i3 ON {schema}.job (name, state, COALESCE(singleton_key, '')) WHERE state <= 'active' AND policy = 'stately'$ddl$]
    WHEN 'exclusive' THEN ARRAY[
      $ddl$CREATE UNIQUE INDEX job_i6 ON {schema}.job (name, COALESCE(singleton_key, '')) WHERE state <= 'active' AND policy = 'exclusive'$ddl$]
    WHEN 'key_strict_fifo' THEN ARRAY[
      $ddl$CREATE UNIQUE INDEX job_i8 ON {schema}.job (name, singleton_key) WHERE state IN ('active', 'retry', 'failed') AND policy = 'key_strict_fifo'$ddl$,
      $ddl$CREATE INDEX job_i10 ON {schema}.job (name, singleton_key, state DESC, created_on, id) INCLUDE (start_after) WHERE state < 'active' AND NOT blocked AND policy = 'key_strict_fifo'$ddl$,
      $ddl$ALTER TABLE {schema}.job ADD CONSTRAINT job_key_strict_fifo_singleton_key_check CHECK (NOT (policy = 'key_strict_fifo' AND singleton_key IS NULL))$ddl$]
    ELSE ARRAY[]::text[]
  END
  LOOP
    EXECUTE {schema}.job_table_format(ddl_text, part_table);
  END LOOP;

  -- The CHECK matching the partition bound lets ATTACH skip scanning the (empty) table.
  EXECUTE pg_catalog.format('ALTER TABLE {schema}.%I ADD CONSTRAINT cjc CHECK (name = %L)', part_table, queue_name);
  EXECUTE pg_catalog.format('ALTER TABLE {schema}.job ATTACH PARTITION {schema}.%I FOR VALUES IN (%L)', part_table, queue_name);
END
$fn$;

-- Delete a queue with its jobs: a partitioned queue's table is dropped, a shared one's rows deleted.
CREATE FUNCTION {schema}.delete_queue(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
  queue_table text;
  own_table boolean;
BEGIN
  SELECT q.table_name, q.partition INTO queue_table, own_table FROM {schema}.queue q WHERE q.name = queue_name;

  IF own_table THEN
    EXECUTE pg_catalog.format('DROP TABLE IF EXISTS {schema}.%I', queue_table);
  ELSE
    -- Like pg-boss, an unknown queue fails here (a NULL table name cannot be formatted).
    EXECUTE pg_catalog.format('DELETE FROM {schema}.%I WHERE name = %L', queue_table, queue_name);
  END IF;

  DELETE FROM {schema}.queue q WHERE q.name = queue_name;
END
$fn$;

INSERT INTO {schema}.version (version) VALUES (46);
