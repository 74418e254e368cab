"""Warm warehouse engines: a web process's for its synchronous calls (a dry run's count and estimates), a worker
process's for the small queries it runs one after another.

Opening an engine costs more than counting a customer's day or exporting a small query: DuckDB builds a
database instance on every open (15-90 ms on a busy 2-core machine, against a few ms for the count), PostgreSQL
a connection. So an engine a call is done with stays open here for QUOTE_ENGINE_IDLE_SECONDS (web) or
WORKER_ENGINE_IDLE_SECONDS (worker), and the next call takes it. Engines are kept per warehouse URL and used by
one call at a time; one that failed or was ever cancelled (`reusable()`) is closed, never kept.

An idle DuckDB engine holds the file's shared lock, so a loader (which needs it alone) waits at most that long
after the last call, as it waits for a running export. 0 turns this off: every call opens its own engine.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from collections.abc import Iterator

from django.conf import settings

from exports.engines.base import WarehouseEngine
from queries.warehouse import warehouse_engine

SWEEP_SECONDS = 0.25  # how often idle engines are looked at (an engine may idle this much longer)


class WarmEngines:
    """Engines of the configured warehouse, kept open between calls for the seconds the setting `idle_setting`
    names; thread-safe."""

    def __init__(self, idle_setting: str) -> None:
        self._idle_setting = idle_setting
        self._lock = threading.Lock()
        self._idle: dict[str, list[tuple[WarehouseEngine, float]]] = {}  # url -> (engine, close after)
        self._lent: dict[int, str] = {}  # id(engine) -> its url
        self._sweeper: threading.Thread | None = None
        self._stopping = threading.Event()
        self._exit_hooked = False

    def take(self) -> WarehouseEngine:
        """An idle engine of the configured warehouse, or a new one; give it back (or close it) when done."""
        url = str(settings.WAREHOUSE_URL)
        with self._lock:
            idle = self._idle.get(url)
            engine = idle.pop()[0] if idle else None
        engine = engine or warehouse_engine()
        with self._lock:
            self._lent[id(engine)] = url
        return engine

    def give_back(self, engine: WarehouseEngine) -> None:
        """Keep a healthy engine for the next call (or close it at once when keeping is off, or when it was
        cancelled: an interrupt could still land on the next call's statement)."""
        seconds = float(getattr(settings, self._idle_setting))
        with self._lock:
            url = self._lent.pop(id(engine), None)
            if url is not None and seconds > 0 and engine.reusable():
                self._idle.setdefault(url, []).append((engine, time.monotonic() + seconds))
                if self._sweeper is None and not self._stopping.is_set():
                    self._sweeper = threading.Thread(target=self._sweep, name="warm-engines", daemon=True)
                    self._sweeper.start()
                    if not self._exit_hooked:
                        # Engines are closed by the main thread at exit: DuckDB closing on a thread the
                        # interpreter is tearing down aborts the process.
                        atexit.register(self.stop)
                        self._exit_hooked = True
                return
        engine.close()

    @contextlib.contextmanager
    def lent(self) -> Iterator[WarehouseEngine]:
        """An engine for the block: given back when the block ends normally, closed when it raises."""
        engine = self.take()
        try:
            yield engine
        except BaseException:
            self.discard(engine)
            raise
        self.give_back(engine)

    def discard(self, engine: WarehouseEngine) -> None:
        """Close an engine that failed or was interrupted."""
        with self._lock:
            self._lent.pop(id(engine), None)
        engine.close()

    def close_all(self) -> None:
        with self._lock:
            engines = [engine for idle in self._idle.values() for engine, _ in idle]
            self._idle.clear()
        for engine in engines:
            engine.close()

    def stop(self) -> None:
        """Stop the sweeper and close every idle engine, in this thread (at exit)."""
        self._stopping.set()
        with self._lock:
            sweeper = self._sweeper
        if sweeper is not None:
            sweeper.join()
        self.close_all()

    def _sweep(self) -> None:
        """Close the engines idle too long; the thread ends when none is left (give_back starts another)."""
        while not self._stopping.wait(SWEEP_SECONDS):
            now, expired = time.monotonic(), []
            with self._lock:
                for url, idle in list(self._idle.items()):
                    expired += [engine for engine, until in idle if until <= now]
                    kept = [(engine, until) for engine, until in idle if until > now]
                    if kept:
                        self._idle[url] = kept
                    else:
                        del self._idle[url]
                done = not self._idle
                if done:
                    self._sweeper = None
            for engine in expired:
                engine.close()
            if done:
                return
        with self._lock:
            self._sweeper = None


warm_engines = WarmEngines("QUOTE_ENGINE_IDLE_SECONDS")  # a web process's
worker_engines = WarmEngines("WORKER_ENGINE_IDLE_SECONDS")  # a worker process's
