"""Control API of the emulated Livy services (``/_emulator/livy/...``): sessions and settings.

- ``GET livy/sessions``: every session of both flavours (``flavour``, ``name``, ``state``, ``request``...);
- ``GET|PATCH livy/settings``: :class:`~aml_jupyterhub.emulator.livy.model.LivySettings` (idle expiry, acquisition polls, Basic auth).
  A reset (``POST reset``) restores the defaults.
"""

from __future__ import annotations

from ..core.control import ControlHandler
from ..core.handlers import ServiceError
from ..core.state import EmulatorState
from .model import LivySettings, store


class LivySessions(ControlHandler):
    def get(self) -> None:
        self.send_json(200, {"sessions": store(self.state).describe()})


class LivySettingsControl(ControlHandler):
    def get(self) -> None:
        self.send_json(200, store(self.state).settings_dict())

    def patch(self) -> None:
        livy = store(self.state)
        changes = self.json_body()
        unknown = set(changes) - set(LivySettings.__dataclass_fields__)
        if unknown:
            raise ServiceError(400, "InvalidSetting", f"Unknown Livy settings: {sorted(unknown)}")
        for key, value in changes.items():
            setattr(livy.settings, key, value)
        self.send_json(200, livy.settings_dict())

    def delete(self) -> None:
        store(self.state).settings = LivySettings()
        self.send_json(200, store(self.state).settings_dict())


def control_routes(state: EmulatorState) -> list:
    kw = {"state": state}
    return [
        (r"/_emulator/livy/sessions", LivySessions, kw),
        (r"/_emulator/livy/settings", LivySettingsControl, kw),
    ]
