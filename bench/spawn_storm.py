"""Spawn storm: N users start their own compute instance at once, through a real JupyterHub.

What it does: starts the Azure emulator in-process (with N extra users allowed on
both workspaces and enough core quota), a real JupyterHub + proxy subprocess with
the AML spawner (tests/support/hub.py ``HubProcess``), signs every user in through
the emulated Entra page (tests/support/signin.py), then POSTs every user's server
at once and waits until all are ready ("create storm": every instance is new).
It then watches a steady state (everyone running), stops every server, and
storms again ("reuse storm": spawns start the stopped instances; ``--no-reuse``
skips it), and stops everyone.

It prints one JSON object (times in seconds unless the key says ms):

Per storm (``create_storm``, ``reuse_storm``):

- ``spawn_overhead_s``: time from POST to ready minus the emulated provisioning
  time (``--create-seconds`` for a new instance, ``--start-seconds`` for a reused
  one), p50/p95/max. This is what the hub + spawner add: polling (the shared list
  every ``--poll-interval``), ARM round trips, the hub's own bookkeeping. Ready
  is observed by one admin poll of the user list every ``--ready-poll`` seconds,
  so figures have that granularity.
- ``hub_api_latency_ms``: GET /hub/api/ (through the proxy), sampled in a loop,
  p50/p99, during the storm; compare with ``idle_hub_api_latency_ms`` (after
  sign-in, before the storm) and ``steady_state.hub_api_latency_ms``.
- ``arm_requests_per_spawn``: every ARM request the emulator logged from the
  first POST until the last server was ready, divided by the users spawned;
  ``arm_throttled_429`` says whether the storm hit the ARM throttle.
- ``steady_state.arm_requests_per_minute``: ARM requests while everyone is
  running, over ``--steady-seconds``; by design it should not grow with N.
- ``failures``: sign-ins, spawns and stops that did not succeed; a storm's
  spawn failures are counted by the reason the hub logged.

Compute instances have no setup scripts in the demo profiles, so
``--setup-seconds`` only matters for profiles that add one. The emulator runs
in this process, so on a small machine it competes with the hub for CPU.

The script imports the test helpers from ``tests/support`` by putting ``tests/``
on ``sys.path`` (they are not part of the installed package). Run it with
``make bench`` or ``.venv/bin/python bench/spawn_storm.py --users 20``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # for support.hub / support.signin (test helpers, not packaged)

from aml_jupyterhub.emulator import EmulatorThread, default_config  # noqa: E402
from aml_jupyterhub.emulator.client import EmulatorControl  # noqa: E402
from aml_jupyterhub.emulator.core.config import EmulatorConfig, User, stable_id  # noqa: E402
from aml_jupyterhub.emulator.core.server import endpoints_line  # noqa: E402
from support.hub import HubProcess, wait_for  # noqa: E402
from support.signin import hub_sign_in  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=100, help="concurrent users (default 100)")
    p.add_argument("--concurrency", type=int, default=0, help="parallel spawn requests (default: --users)")
    p.add_argument("--signin-concurrency", type=int, default=8, help="parallel browser sign-ins")
    p.add_argument("--create-seconds", type=float, default=20.0, help="emulated compute-instance creation time")
    p.add_argument("--setup-seconds", type=float, default=1.0, help="emulated setup-script time (only with setup scripts)")
    p.add_argument("--start-seconds", type=float, default=10.0, help="emulated start time (reused instances)")
    p.add_argument("--stop-seconds", type=float, default=5.0, help="emulated stop time")
    p.add_argument("--delete-seconds", type=float, default=1.0, help="emulated delete time")
    p.add_argument("--poll-interval", type=float, default=5.0, help="AMLSpawner.poll_interval_seconds (shared list)")
    p.add_argument("--reuse", action=argparse.BooleanOptionalAction, default=True,
                   help="after stopping everyone, storm again: spawns start the existing instances (default: on)")
    p.add_argument("--idle-seconds", type=float, default=10.0, help="idle hub-latency sampling before the storm")
    p.add_argument("--steady-seconds", type=float, default=60.0, help="steady-state window with everyone running")
    p.add_argument("--spawn-timeout", type=float, default=600.0, help="give up on a spawn after this long")
    p.add_argument("--ready-poll", type=float, default=0.5, help="how often the admin user list is read")
    p.add_argument("--unthrottled", action="store_true", help="raise the emulated ARM throttle far above Azure's")
    args = p.parse_args(argv)
    args.concurrency = args.concurrency or args.users
    return args


# -- the emulated directory ------------------------------------------------------------
def bench_config(n: int) -> EmulatorConfig:
    """The demo directory plus ``n`` data scientists who may run compute instances, with quota for all."""
    config = default_config()
    tenant = config.tenants[0]
    scientists = next(g.id for g in config.groups if g.display_name == "data-scientists")
    for i in range(n):
        name = f"storm{i:04d}"
        user = User(
            username=f"{name}@{tenant.domain}",
            display_name=f"Storm User {i}",
            tenant_id=tenant.id,
            oid=stable_id("user", tenant.id, name),
            groups=[scientists],
            mail=f"{name}@{tenant.domain}",
        )
        config.users.append(user)
        for ws in config.workspaces:
            ws.role_assignments[user.oid] = "AzureML Compute Operator"
    for key in config.core_quotas:
        if config.core_quotas[key]:
            config.core_quotas[key] = max(config.core_quotas[key], 8 * (n + 4))
    return config


def storm_users(config: EmulatorConfig) -> list[str]:
    return [u.username for u in config.users if u.username.startswith("storm")]


# -- measuring ----------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def summary(values: list[float], *qs: float, scale: float = 1.0) -> dict:
    out = {f"p{q:g}": (None if pct(values, q) is None else round(pct(values, q) * scale, 3)) for q in qs}
    return {**out, "max": round(max(values) * scale, 3) if values else None, "n": len(values)}


class LatencySampler(threading.Thread):
    """GET ``url`` in a loop; keeps (time, seconds or None on error) samples."""

    def __init__(self, url: str, pause: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.url, self.pause = url, pause
        self.samples: list[tuple[float, float | None]] = []
        self.done = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while not self.done.is_set():
            t0 = time.monotonic()
            try:
                ok = session.get(self.url, timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            self.samples.append((t0, time.monotonic() - t0 if ok else None))
            self.done.wait(self.pause)

    def window(self, start: float, end: float) -> dict:
        inside = [s for t, s in self.samples if start <= t < end]
        return {**summary([s for s in inside if s is not None], 50, 99, scale=1000), "errors": inside.count(None)}


# -- the hub ----------------------------------------------------------------------------------
def start_hub(workdir: Path, emulator: EmulatorThread, args: argparse.Namespace) -> HubProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    endpoints_file = workdir / "endpoints.json"
    endpoints_file.write_text(endpoints_line(emulator.endpoints))
    extra = f"""
    c.JupyterHub.concurrent_spawn_limit = {max(100, args.users)}
    c.JupyterHub.log_level = "INFO"
    c.AMLSpawner.start_timeout = {int(args.spawn_timeout)}
    """
    env = {"AML_DEMO_SPAWNER": "aml", "AML_POLL_INTERVAL": str(args.poll_interval)}
    return HubProcess(workdir, endpoints_file, extra_config=extra, env=env).start()


def sign_in_all(hub: HubProcess, users: list[str], ca_bundle: str, workers: int) -> tuple[list[float], dict]:
    """Every user signs in through the emulated Entra page; returns durations and failures."""

    def one(username: str) -> float:
        t0 = time.monotonic()
        _, callback = hub_sign_in(hub.url, username, ca_bundle)
        if callback.status_code != 302:
            raise RuntimeError(f"callback answered {callback.status_code}")
        return time.monotonic() - t0

    return run_all(one, users, workers)


def run_all(fn, users: list[str], workers: int) -> tuple[list, dict]:
    """``fn(user)`` for every user in a thread pool; (results, {user: error})."""
    results, failures = [], {}
    with ThreadPoolExecutor(workers) as pool:
        futures = {u: pool.submit(fn, u) for u in users}
    for user, future in futures.items():
        try:
            results.append(future.result())
        except Exception as e:  # noqa: BLE001 - a benchmark reports every failure
            failures[user] = f"{type(e).__name__}: {e}"[:300]
    return results, failures


def server_states(hub: HubProcess) -> dict[str, str]:
    """username -> "ready" | "pending" | "none" for every user, from the paginated admin user list."""
    states, offset = {}, 0
    while True:
        r = hub.api("GET", "/users", params={"offset": offset, "limit": 200})
        r.raise_for_status()
        page = r.json()
        for model in page:
            server = model.get("servers", {}).get("")
            states[model["name"]] = "none" if not server else ("ready" if server["ready"] else "pending")
        if len(page) < 200:
            return states
        offset += 200


# -- one storm ----------------------------------------------------------------------------------
def storm(hub: HubProcess, users: list[str], args: argparse.Namespace) -> tuple[dict[str, float], dict, float, float]:
    """POST every user's server at once and watch until each is ready or failed.

    Returns ({user: seconds from POST to ready}, {user: failure}, storm start, storm end) (monotonic).
    """
    posted: dict[str, float] = {}
    failures: dict[str, str] = {}

    def post(username: str) -> None:
        posted[username] = time.monotonic()
        r = hub.api("POST", f"/users/{username}/server", json={"user_options": {}})
        if r.status_code not in (201, 202):
            failures[username] = f"POST {r.status_code}: {r.text[:200]}"

    start = time.monotonic()
    poster = threading.Thread(target=run_all, args=(post, users, args.concurrency), daemon=True)
    poster.start()
    ready: dict[str, float] = {}
    while len(ready) + len(failures) < len(users) and time.monotonic() - start < args.spawn_timeout:
        time.sleep(args.ready_poll)
        now = time.monotonic()
        for username, state in server_states(hub).items():
            if username not in posted or username in ready or username in failures:
                continue
            if state == "ready":
                ready[username] = now - posted[username]
            elif state == "none" and not poster.is_alive():  # accepted, then gone: the spawn failed
                failures[username] = "server vanished before it was ready (spawn failed; see hub.log)"
    end = time.monotonic()
    for username in users:
        if username not in ready and username not in failures:
            failures[username] = f"not ready after {args.spawn_timeout}s"
    poster.join(timeout=60)
    return ready, failures, start, end


def explain(failures: dict[str, str], hub_log: str) -> dict:
    """Failures counted by reason; "vanished" is replaced by the hub's own reason from its log."""
    logged = dict(re.findall(r"Unhandled error starting (\S+?)'s server: (.*)", hub_log))
    reasons = [logged.get(u, why) if "vanished" in why else why for u, why in failures.items()]
    return {"count": len(failures), "by_reason": dict(Counter(reasons))}


def stop_all(hub: HubProcess, users: list[str], args: argparse.Namespace) -> dict:
    """DELETE every user's server and wait until none is left; {user: failure}."""

    def stop(username: str) -> None:
        r = hub.api("DELETE", f"/users/{username}/server")
        if r.status_code not in (202, 204, 400):  # 400: no server to stop
            raise RuntimeError(f"DELETE {r.status_code}: {r.text[:200]}")

    _, failures = run_all(stop, users, args.concurrency)
    try:
        wait_for(lambda: all(server_states(hub).get(u) == "none" for u in users), args.spawn_timeout, 1.0, "all stopped")
    except TimeoutError as e:
        failures["*"] = str(e)
    return failures


def arm_counts(control: EmulatorControl, since: float) -> dict:
    counts = control.request_counts(since=since, service="arm")
    throttled = counts["by_status"].get("429", 0)
    return {"total": counts["total"], "throttled_429": throttled, "by_route": counts["by_route"]}


def users_with_instances(control: EmulatorControl) -> set[str]:
    """Users who already have a compute instance (a spawn starts it instead of creating one)."""
    return {c["tags"].get("aml-jupyterhub-user") for c in control.arm_computes()}


def storm_report(
    hub: HubProcess, control: EmulatorControl, sampler: LatencySampler, users: list[str], args: argparse.Namespace
) -> dict:
    """One storm, measured: overhead, hub latency during it, ARM traffic."""
    reused = users_with_instances(control) & set(users)
    provisioning = {u: args.start_seconds if u in reused else args.create_seconds for u in users}
    mark = control.mark()
    ready, failures, start, end = storm(hub, users, args)
    arm = arm_counts(control, mark)
    overhead = [t - provisioning[u] for u, t in ready.items()]
    return {
        "instances": {"created": len(users) - len(reused), "started": len(reused)},
        "ready": len(ready),
        "wall_s": round(end - start, 1),
        "time_to_ready_s": summary(list(ready.values()), 50, 95),
        "spawn_overhead_s": summary(overhead, 50, 95),
        "hub_api_latency_ms": sampler.window(start, end),
        "arm_requests": arm["total"],
        "arm_requests_per_spawn": round(arm["total"] / max(1, len(users)), 2),
        "arm_throttled_429": arm["throttled_429"],
        "arm_by_route": arm["by_route"],
        "failures": explain(failures, hub.logs()),
    }


def steady_state(control: EmulatorControl, sampler: LatencySampler, seconds: float) -> dict:
    """Everyone running: ARM requests per minute (the shared poller) and hub latency."""
    mark, start = control.mark(), time.monotonic()
    time.sleep(seconds)
    arm = arm_counts(control, mark)
    return {
        "seconds": seconds,
        "arm_requests_per_minute": round(arm["total"] * 60 / seconds, 1),
        "arm_throttled_429": arm["throttled_429"],
        "arm_by_route": arm["by_route"],
        "hub_api_latency_ms": sampler.window(start, time.monotonic()),
    }


# -- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.getLogger("tornado.access").setLevel(logging.ERROR)  # the emulator's expected 404s are not news
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="spawn-storm-"))
    config = bench_config(args.users)
    users = storm_users(config)
    emulator = EmulatorThread(config=config, tls_dir=workdir / "tls")
    emulator.start()
    control = EmulatorControl(emulator.endpoints["control"], emulator.endpoints["ca_bundle"])
    timings = {"create": args.create_seconds, "setup": args.setup_seconds, "start": args.start_seconds,
               "stop": args.stop_seconds, "delete": args.delete_seconds}
    control.update_settings(timings=timings)
    if args.unthrottled:
        control.update_settings(throttle={"read_burst": 10**6, "read_rate": 10**6, "write_burst": 10**6, "write_rate": 10**6})
    hub = start_hub(workdir / "hub", emulator, args)
    sampler = LatencySampler(f"{hub.url}/hub/api/")
    report: dict = {"users": args.users, "concurrency": args.concurrency, "poll_interval_s": args.poll_interval,
                    "timings_s": timings, "throttle": control.settings()["throttle"], "hub_log": str(hub.log_path)}
    try:
        t0 = time.monotonic()
        signin_times, signin_failures = sign_in_all(hub, users, emulator.endpoints["ca_bundle"], args.signin_concurrency)
        report["sign_in"] = {"wall_s": round(time.monotonic() - t0, 1), **summary(signin_times, 50, 95)}
        sampler.start()
        idle_start = time.monotonic()
        time.sleep(args.idle_seconds)
        report["idle_hub_api_latency_ms"] = sampler.window(idle_start, time.monotonic())
        spawnable = [u for u in users if u not in signin_failures]
        report["create_storm"] = storm_report(hub, control, sampler, spawnable, args)
        report["steady_state"] = steady_state(control, sampler, args.steady_seconds)
        stop_failures = stop_all(hub, spawnable, args)
        if args.reuse:
            report["reuse_storm"] = storm_report(hub, control, sampler, spawnable, args)
            stop_failures.update(stop_all(hub, spawnable, args))
        report["failures"] = {
            "sign_in": signin_failures,
            "spawn": sum(report[k]["failures"]["count"] for k in ("create_storm", "reuse_storm") if k in report),
            "stop": stop_failures,
        }
    finally:
        sampler.done.set()
        hub.stop()
        emulator.stop()
    report["runtime_s"] = round(time.monotonic() - began, 1)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
