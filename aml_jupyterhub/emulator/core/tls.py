"""The emulator's own certificate authority and server certificate (trustme)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass
class TLSFiles:
    ca_bundle: Path
    server_chain: Path
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.server_chain), str(self.server_key))
        return ctx


def ensure_tls(directory: Path) -> TLSFiles:
    """Create (or reuse) a CA and a loopback server certificate in ``directory``.

    Reusing them keeps every client's CA bundle valid across emulator restarts.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = TLSFiles(directory / "ca.pem", directory / "server-chain.pem", directory / "server-key.pem")
    ca_key = directory / "ca-key.pem"
    if files.ca_bundle.exists() and ca_key.exists() and files.server_chain.exists():
        return files
    ca = trustme.CA(organization_name="aml-jupyterhub local Azure emulator")
    cert = ca.issue_cert(*SERVER_NAMES)
    ca.cert_pem.write_to_path(str(files.ca_bundle))
    ca.private_key_pem.write_to_path(str(ca_key))
    ca_key.chmod(0o600)
    cert.private_key_pem.write_to_path(str(files.server_key))
    files.server_key.chmod(0o600)
    with open(files.server_chain, "wb") as f:
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
    return files
