"""Measures the hub from inside: event-loop lag and CPU seconds, appended to a file for the benchmark.

Loaded by the benchmark's hub config (``install(path)``). Every ``tick``
seconds a task asks the loop to wake it; how late it wakes is the loop's lag
(what every request, spawn and poll waits on top of its own work). Once a
second it appends one JSON line: ``{"t": <monotonic>, "cpu": <hub process CPU
seconds>, "lags_ms": [...]}``. ``time.monotonic()`` is system-wide on Linux, so
the benchmark can cut windows with its own clock.
"""

from __future__ import annotations

import asyncio
import json
import time


async def _probe(path: str, tick: float) -> None:
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    flushed = time.monotonic()
    with open(path, "a", buffering=1) as out:  # one short line a second: negligible next to the hub's own work
        while True:
            before = loop.time()
            await asyncio.sleep(tick)
            lags.append(round(max(0.0, loop.time() - before - tick) * 1000, 2))
            now = time.monotonic()
            if now - flushed >= 1.0:
                out.write(json.dumps({"t": now, "cpu": time.process_time(), "lags_ms": lags}) + "\n")
                lags, flushed = [], now


def install(path: str, tick: float = 0.02) -> None:
    """Start the probe on the loop the hub is about to run (call from jupyterhub_config.py)."""
    loop = asyncio.get_event_loop()
    loop.call_soon(lambda: loop.create_task(_probe(path, tick)))


def read(path: str) -> list[dict]:
    """The probe's lines so far."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]
    except FileNotFoundError:
        return []


def window(lines: list[dict], start: float, end: float) -> dict:
    """Hub CPU seconds and loop lags (ms) between two monotonic times."""
    inside = [line for line in lines if start <= line["t"] <= end]
    before = [line for line in lines if line["t"] < start]
    cpu = None
    if inside:
        first = before[-1]["cpu"] if before else inside[0]["cpu"]
        cpu = inside[-1]["cpu"] - first
    return {"cpu_s": None if cpu is None else round(cpu, 3), "lags_ms": [lag for line in inside for lag in line["lags_ms"]]}
