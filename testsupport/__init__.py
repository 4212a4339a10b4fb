"""Real helpers for the tests and the benchmarks: a local Bot API server, a mosquitto broker on a free port,
`eventually` for work done in other tasks, threads or processes, a hand-moved clock, a recording notifier and
another process holding the SQLite write lock.

Not part of the service: nothing in core, store, inference, monitor, bot or hemowatch imports it.
"""
