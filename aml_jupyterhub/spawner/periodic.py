"""A background task that runs one round every ``interval`` seconds; a failed round is logged, not fatal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any


def run_every(interval: float, one_round: Callable[[], Awaitable[Any]], log: logging.Logger, what: str) -> asyncio.Task:
    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await one_round()
            except Exception:  # noqa: BLE001 - a bad round must not end the loop
                log.exception("%s round failed", what)

    return asyncio.ensure_future(loop())
