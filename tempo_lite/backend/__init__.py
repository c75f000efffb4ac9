"""The backend-scheduler and backend-worker roles, as Tempo's: one scheduler plans compaction and retention
jobs from the block list (the compactor's planning) and hands each to one worker; workers fetch jobs over the
internal HTTP API, execute them with the compactor and report back. docs/scaling.md, "Backend scheduler".

`tracker.py`: which job is pending, with which worker, done or failed (pure, timed by trio's clock);
`leader.py`: only one scheduler acts at a time (a Kafka consumer group); `scheduler.py`, `worker.py`: the
two roles.
"""
