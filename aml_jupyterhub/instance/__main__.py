"""``python -m aml_jupyterhub.instance start --hub-url ... --audience ...`` (the instance's startup script)."""

from __future__ import annotations

import argparse
import logging
import sys

from . import agent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aml_jupyterhub.instance")
    sub = p.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="set this instance up for its user (run on every start)")
    start.add_argument("--hub-url", required=True, help="the hub's API URL, e.g. https://hub.example.org/hub/api")
    start.add_argument("--audience", required=True, help="the hub's Entra app (api://<client id>)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s aml-jupyterhub %(levelname)s %(message)s")
    try:
        agent.start(args.hub_url, args.audience)
    except Exception as e:  # noqa: BLE001 - one line for Azure's setup error, never a traceback with secrets
        logging.getLogger("aml_jupyterhub.instance").error("setup failed: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
