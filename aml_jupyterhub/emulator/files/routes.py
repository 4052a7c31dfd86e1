"""Azure Files (the FileREST data plane) on its own HTTPS port.

URLs are path-style, as the SDK builds them for a loopback host:
``https://127.0.0.1:PORT/{account}[/{share}[/{path}]]``. :mod:`aml_jupyterhub.emulator.files.operations`
names the operation (method, path depth, ``restype``/``comp``); every request
is authorized by Shared Key, SAS or bearer token (:mod:`aml_jupyterhub.emulator.files.auth`)
before the operation runs (:mod:`aml_jupyterhub.emulator.files.share_ops`, :mod:`aml_jupyterhub.emulator.files.directory_ops`,
:mod:`aml_jupyterhub.emulator.files.file_ops`). Answers speak Storage's dialect: XML errors with
``x-ms-error-code``, and ``x-ms-request-id``, ``x-ms-version`` and ``Date``
on every response.

Share records live in ``state.section("shares")``; file bytes under
``state.files_root/{account}/{share}/`` (:mod:`aml_jupyterhub.emulator.files.model`), so a mounted
view of that directory and REST see the same bytes.

Deviations from Azure Files, each deliberate:

- An unknown account answers ``400 InvalidUri``: in Azure the account's host
  name simply does not resolve, which one loopback address cannot show.
- Paths are case-sensitive (Azure Files is case-insensitive, case-preserving);
  metadata names arrive lower-cased (HTTP header names reach the emulator
  normalised) and are stored and returned that way.
- Share usage counts file lengths (sparse files included) and the quota is
  enforced when a file is created or resized: a file that would take the share
  past its quota is refused with ``403 ShareSizeLimitReached``.
- Shared Key failures do not echo the caller's signature (Azure does).
- Not emulated: snapshots, leases, copy, handles, range lists,
  Create/Get Permission, service properties, NFS, conditional headers and
  user-delegation SAS. Rename (:mod:`.rename`) and stored access policies
  (:mod:`.acl`) are, because the user space's mount needs them.
- Bearer tokens: :mod:`aml_jupyterhub.emulator.files.rbac` documents what Azure does (share
  management by OAuth needs version 2024-11-04 and a management role; the
  Privileged data roles do not include one) and the emulator does the same.
"""

from __future__ import annotations

from ..core.handlers import ServiceError
from ..core.state import EmulatorState
from .auth import authorize
from .context import FilesContext
from .model import FileStore
from .operations import Route, find_route

__all__ = ["FilesHandler", "on_start", "routes"]


class FilesHandler(FilesContext):
    """Every FileREST request: :meth:`prepare` resolves and authorizes, then the operation runs."""

    def initialize(self, state: EmulatorState) -> None:  # type: ignore[override]
        super().initialize(state)
        self.target: Route | None = find_route(self.sreq)

    @property
    def route(self) -> str:
        target = getattr(self, "target", None)
        return target.op.name if target else type(self).__name__

    async def prepare(self) -> None:
        await super().prepare()  # injected faults first, as for every service
        if self._finished:
            return
        self.account = self._account()
        if self.target is None:
            raise ServiceError(400, "InvalidUri", "The requested URI does not represent any resource on the server.")
        self.principal = authorize(self.state, self.account, self.sreq, self.target.op)

    async def _run(self) -> None:
        assert self.target is not None
        result = self.target.run(self)
        if result is not None:
            await result

    get = put = head = delete = _run  # type: ignore[assignment]


def routes(state: EmulatorState) -> list:
    return [(r"/.*", FilesHandler, {"state": state})]


def on_start(state: EmulatorState) -> None:
    """Empty the shares' bytes whenever the emulator state is reset."""
    state.reset_hooks.append(FileStore(state).reset)
