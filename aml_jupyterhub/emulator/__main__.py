"""``python -m aml_jupyterhub.emulator``: serve the emulated Azure until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from .core.config import EmulatorConfig
from .core.server import Emulator, endpoints_line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m aml_jupyterhub.emulator", description=__doc__)
    p.add_argument("--config", type=Path, help="JSON file with an EmulatorConfig (default: the demo directory)")
    p.add_argument("--data-dir", type=Path, help="persist state here, so a restart keeps computes and shares")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    p.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="SERVICE=PORT",
        help="fixed port for a service (authority, graph, arm, files, control); default: any free port",
    )
    p.add_argument(
        "--instance-runtime",
        action="store_true",
        help="run compute instances for real: sandbox home, startup script, a Jupyter server per running instance",
    )
    p.add_argument("--endpoints-file", type=Path, help="also write the endpoints JSON here")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    config = EmulatorConfig.from_dict(json.loads(args.config.read_text())) if args.config else None
    ports = {}
    for item in args.port:
        name, _, port = item.partition("=")
        ports[name] = int(port)
    emulator = Emulator(config=config, data_dir=args.data_dir, host=args.host, ports=ports, instance_runtime=args.instance_runtime)
    endpoints = await emulator.start()
    line = endpoints_line(endpoints)
    if args.endpoints_file:
        args.endpoints_file.write_text(line + "\n")
    print(line, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await emulator.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
