"""An executor that fails any submit: proves code on the event loop never hands work to a worker thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


class NoThreads(ThreadPoolExecutor):
    """Set as a loop's default executor; ``run_in_executor``/``to_thread`` then fail the test."""

    def submit(self, *args, **kwargs):
        raise AssertionError(f"an Azure call used a worker thread: {args[:1]}")
