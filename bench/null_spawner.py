"""The benchmark's baseline spawner: it only waits the emulated provisioning time.

Same hub, proxy, sign-in and storm as the AML spawner, but no Azure: ``start()``
sleeps ``create`` seconds the first time a server starts and ``start``
seconds after that (its state remembers), then routes the server to the
hub-wide redirect server like the AML spawner does; ``stop()`` sleeps
``stop`` seconds. What the hub spends on this is JupyterHub's own cost.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyterhub.spawner import Spawner
from traitlets import Float

from aml_jupyterhub.spawner.connection import Redirector


class NullSpawner(Spawner):
    create_seconds = Float(20.0, config=True, help="Seconds a first start takes (an emulated create + setup).")
    start_seconds = Float(10.0, config=True, help="Seconds a later start takes (an emulated start).")
    stop_seconds = Float(5.0, config=True, help="Seconds a stop takes.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.created = False
        self.running = False

    async def start(self) -> str:
        await asyncio.sleep(self.start_seconds if self.created else self.create_seconds)
        self.created = self.running = True
        redirector = Redirector.shared()
        if self.server is not None:
            redirector.add(self.server.base_url, f"https://{self.user.name.split('@')[0]}.example/lab")
        return redirector.url

    async def stop(self, now: bool = False) -> None:
        self.running = False
        Redirector.shared().remove(self.server.base_url if self.server else "")
        if not now:
            await asyncio.sleep(self.stop_seconds)

    async def poll(self) -> int | None:
        return None if self.running else 0

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "created": self.created}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.created = bool(state.get("created"))

    def clear_state(self) -> None:
        super().clear_state()  # keeps `created`: the next start is a reuse, as with a stopped instance
        self.running = False
