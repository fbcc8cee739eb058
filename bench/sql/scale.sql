-- Statements of the scale benchmark (bench/scale.py), run only on its scratch database. Same
-- conventions as transport/sql: named blocks, a one-line description, {schema} and {now} templates.
-- Jobs themselves are sent through JobManager.send_many, so they carry the queue's policy and
-- defaults exactly as real ones do; these statements only age them.

-- name: complete_oldest
-- Mark a queue's oldest queued jobs completed, as a worker would have, long enough ago that deletion_seconds is due.
WITH oldest AS (
  SELECT name, id FROM {schema}.job
  WHERE name = %(name)s AND state = 'created'
  ORDER BY created_on
  LIMIT %(count)s
)
UPDATE {schema}.job j SET
  state = 'completed',
  created_on = {now} - (j.deletion_seconds + 86400 + 2) * interval '1s',
  started_on = {now} - (j.deletion_seconds + 86400 + 1) * interval '1s',
  completed_on = {now} - (j.deletion_seconds + 86400) * interval '1s',
  output = %(output)s::jsonb
FROM oldest o
WHERE j.name = o.name AND j.id = o.id

-- name: analyze_jobs
-- Refresh the planner's statistics of the job table (all partitions).
ANALYZE {schema}.job

-- name: vacuum_analyze_jobs
-- Reclaim dead row versions and refresh statistics, as autovacuum would (it is off on some servers).
VACUUM (ANALYZE) {schema}.job

-- name: job_table_size
-- Rows by state and the job table's size on disk.
SELECT
  (SELECT count(*) FROM {schema}.job WHERE state = 'completed') AS completed,
  (SELECT count(*) FROM {schema}.job WHERE state < 'active') AS queued,
  (SELECT count(*) FROM {schema}.job) AS total,
  (SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)
     FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = '{schema}.job'::regclass) AS bytes

-- name: reset_jobs
-- Empty the job table between phases (scratch database only).
DELETE FROM {schema}.job

-- name: server_settings
-- What the report says about the server.
SELECT current_setting('server_version') AS server_version,
  current_setting('synchronous_commit') AS synchronous_commit,
  current_setting('shared_buffers') AS shared_buffers,
  current_setting('autovacuum') AS autovacuum
