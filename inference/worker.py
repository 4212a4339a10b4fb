"""Scan analysis in worker processes with a memory limit, so the worst upload costs one analysis, never the service.

    analyzer = ProcessAnalyzer(model_path, workers=2, memory_limit_bytes=1536 * 2**20)
    results = analyzer.analyze_bytes(data, filename, progress)   # as `Analyzer`, from any thread
    analyzer.close()

Each worker is a process of its own (started with `spawn`, so it inherits none of the service's threads) that
caps its address space (`RLIMIT_AS`) before it loads the model, then runs one analysis at a time with its own
`Analyzer`. A scan that would need more memory than the cap fails inside the worker (`MemoryError`), and the
sender gets a plain message; a worker that dies all the same (killed by the kernel's out-of-memory killer, a
crash in a decoder) costs only the analysis it was running: it is replaced, and the next scan gets a new
worker. Every worker is a pool of one, so one dying never takes another's analysis with it.

The workers live and die with the service. SIGINT and SIGTERM sent to the whole process group (Ctrl+C in a
terminal, systemd stopping the unit) are ignored by them, as multiprocessing's own resource tracker ignores them:
the service stops in order and closes its workers, so an analysis running at the stop is finished and recorded,
not cut short. A service that ends without closing them (kill -9, a crash) ends them all the same: each worker
watches its parent and exits when it is gone.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import resource
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inference.analyzer import SHIPPED, Analyzer, Judging, Progress
from inference.errors import InputError
from inference.result import ModelInfo, StudyResult

log = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT = 1536 * 2**20  # address space per worker: the model takes about 500 MB of it
NEEDS_TOO_MUCH_MEMORY = "This scan needs more memory to analyse than HemoWatch allows for one analysis."
ANALYSIS_STOPPED = "The analysis of this scan stopped unexpectedly and was not finished. Please try again later."
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}  # the service's to act on, never a worker's

# --- inside a worker process ------------------------------------------------------------------------------

_analyzer: Analyzer | None = None
_progress: Any = None  # the worker's multiprocessing queue of progress steps


def _start_worker(model_path: Path, options: dict[str, Any], memory_limit_bytes: int, progress: Any) -> None:
    global _analyzer, _progress
    for number in _STOP_SIGNALS:  # born with them blocked (see `_stop_signals_blocked`): ignore, then unblock
        signal.signal(number, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    _analyzer = Analyzer(model_path, **options)
    _progress = progress


def _exit_with_parent() -> None:
    """Exit once the service's process has ended, however it ended. The parent holds the only write end of the
    pipe spawn started this worker through; the parent's sentinel is its read end, ready at end of file."""
    parent = multiprocessing.parent_process()
    assert parent is not None
    parent.join()
    os._exit(1)


def _report(step: str) -> None:
    _progress.put(step)


def _model_info() -> ModelInfo:
    assert _analyzer is not None
    return _analyzer.model_info


def _analyze_bytes(data: bytes, filename: str, judging: Judging) -> list[StudyResult]:
    assert _analyzer is not None
    return _analyzer.analyze_bytes(data, filename, _report, judging)


def _analyze_path(path: Path, judging: Judging) -> list[StudyResult]:
    assert _analyzer is not None
    return _analyzer.analyze_path(path, _report, judging)


# --- in the service ----------------------------------------------------------------------------------------


def _silent(_: str) -> None:
    pass


@contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """Block SIGINT and SIGTERM in this thread meanwhile. A process spawned now inherits the mask, so a Ctrl+C
    that comes while it starts waits until it has chosen to ignore them (multiprocessing starts its resource
    tracker so too); another thread of the service takes the signal."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _Worker:
    """One worker process (a pool of one), started at once and loading the model, and the thread that relays
    its progress steps."""

    def __init__(self, context: Any, initargs: tuple[Any, ...]) -> None:
        self._steps = context.Queue()
        self.pool = ProcessPoolExecutor(1, context, initializer=_start_worker, initargs=(*initargs, self._steps))
        with _stop_signals_blocked():  # the pool spawns its process at the first submit, here
            self.started: Future[ModelInfo] = self.pool.submit(_model_info)
        self._report: Progress = _silent
        self._lock = threading.Lock()
        self._open = True
        threading.Thread(target=self._relay, name="scan-progress", daemon=True).start()

    def _relay(self) -> None:
        while self._open:
            try:
                step = self._steps.get(timeout=0.2)
            except queue.Empty:
                continue
            with self._lock:
                self._report(step)

    def listen(self, progress: Progress) -> None:
        """Pass this analysis's progress steps to `progress` from now on."""
        with self._lock:
            self._report = progress

    def pid(self) -> int | None:
        processes = list(getattr(self.pool, "_processes", None) or {})
        return processes[0] if processes else None

    def close(self) -> None:
        self._open = False
        self.pool.shutdown(wait=True, cancel_futures=True)  # idle or broken: nothing to wait for


class ProcessAnalyzer:
    """The `Analyzer` interface (`analyze_bytes`, `analyze_path`, `model_info`), each analysis run in a worker
    process whose memory is capped at `memory_limit_bytes`. At most `workers` analyses run at once; callers
    beyond that wait for a free worker. Thread-safe; start-up waits until every worker has loaded the model."""

    def __init__(
        self, model_path: Path, *, workers: int = 1, memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT, **options: Any
    ) -> None:
        """`options`: `Analyzer`'s own (threads, limits, window, threshold), for each worker's Analyzer."""
        self._context = multiprocessing.get_context("spawn")
        self._initargs = (model_path, options, memory_limit_bytes)
        self._memory_limit_bytes = memory_limit_bytes
        self._idle: queue.Queue[_Worker] = queue.Queue()
        started = [_Worker(self._context, self._initargs) for _ in range(workers)]
        try:
            infos = [worker.started.result() for worker in started]
        except BrokenProcessPool:
            for worker in started:
                worker.close()
            raise RuntimeError(
                f"the scan analysis worker could not start: it failed to load the model {model_path} within its "
                f"memory limit of {memory_limit_bytes / 2**20:.0f} MB (its error is above)"
            ) from None
        self._info = infos[0]
        for worker in started:
            self._idle.put(worker)

    @property
    def model_info(self) -> ModelInfo:
        return self._info

    def analyze_bytes(
        self, data: bytes, filename: str, progress: Progress | None = None, judging: Judging = SHIPPED
    ) -> list[StudyResult]:
        """An uploaded file, analysed in a worker; raises InputError with a plain message when it cannot be."""
        return self._run(progress, _analyze_bytes, data, filename, judging)

    def analyze_path(
        self, path: Path, progress: Progress | None = None, judging: Judging = SHIPPED
    ) -> list[StudyResult]:
        """A picture, DICOM file, ZIP or folder on disk, analysed in a worker."""
        return self._run(progress, _analyze_path, path, judging)

    def worker_pids(self) -> list[int]:
        """The process ids of the idle workers that have started (for monitoring, and tests)."""
        return [pid for worker in list(self._idle.queue) if (pid := worker.pid()) is not None]

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()

    def _run(self, progress: Progress | None, function: Callable[..., list[StudyResult]], *args: Any) -> list[StudyResult]:
        worker = self._idle.get()
        try:
            worker.listen(progress or _silent)
            try:
                job = worker.pool.submit(function, *args)
            except BrokenProcessPool:  # it died while idle: this scan is not to blame
                log.error("a scan analysis worker had died while idle; starting a new one")
                worker = self._replace(worker)
                worker.listen(progress or _silent)
                job = worker.pool.submit(function, *args)
            return job.result()
        except MemoryError:
            log.warning("a scan needed more than the %.0f MB an analysis may use; it was refused",
                        self._memory_limit_bytes / 2**20)
            raise InputError(NEEDS_TOO_MUCH_MEMORY) from None
        except BrokenProcessPool:
            log.error("a scan analysis worker died during an analysis (out of memory or a crash); starting a new one")
            worker = self._replace(worker)  # it loads the model now rather than at the next scan
            raise InputError(ANALYSIS_STOPPED) from None
        finally:
            worker.listen(_silent)
            self._idle.put(worker)

    def _replace(self, worker: _Worker) -> _Worker:
        worker.close()
        return _Worker(self._context, self._initargs)
