"""``python -m bench``: the pgboss:// transport beside Celery+Redis and kombu's SQLAlchemy transport.

Three measurements per broker, each with real ``celery worker -P prefork -c 2`` processes:

* **drain**: tasks/s while a worker empties a queue of pre-published no-op tasks (first task start
  to last task end, so worker start-up is not counted);
* **enqueue**: tasks/s of one producer publishing in a loop (durable commits); the brokers'
  producers take turns, 250 tasks at a time, so they see the same background load;
* **pickup latency**: publish → task start, p50/p99, one task at a time against an idle worker.

Tasks report through a Redis side channel that costs every broker the same. ``--rounds`` (2)
repeats it all, brokers interleaved; rates are the median of the rounds. Results go to the
"Transport" section of ``BENCHMARKS.md``.
"""
