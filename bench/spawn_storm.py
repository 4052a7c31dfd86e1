"""Spawn storm: N users start their own compute instance at once, through a real JupyterHub.

What it does: starts the Azure emulator **in its own process** (``python -m
aml_jupyterhub.emulator``, with N extra users allowed on both workspaces and
core quota for all), then runs the same storms twice, each time with a fresh
real JupyterHub + configurable-http-proxy subprocess (``tests/support/hub.py``):

1. **baseline**: the hub with ``bench/null_spawner.py``, a spawner that only
   waits the emulated provisioning time: JupyterHub's own cost;
2. **aml**: the same hub configuration with the AML spawner against the
   emulator.

Each time: every user signs in through the emulated Entra page, idle hub
latency is sampled, every user's server is POSTed at once ("create storm"),
(aml only: a steady state with everyone running), everyone is stopped, every
server is POSTed again ("reuse storm": instances are started, not created;
``--no-reuse`` skips it) and everyone is stopped.

It prints one JSON object (times in seconds unless the key says ms). Per storm:

- ``spawn_overhead_s``: POST to ready minus the emulated provisioning time
  (``--create-seconds`` + ``--setup-seconds`` for a new instance, every AML
  instance runs a startup script; ``--start-seconds`` for a reused one).
  Ready is the time JupyterHub logs "User ... took ... seconds to start"
  (millisecond timestamps); the benchmark follows the hub log and does not
  poll the hub during a storm (listing 100s of users is itself costly for
  JupyterHub: it blocked the hub's loop for seconds in a first version).
- ``hub_api_latency_ms``: ``GET /hub/api/`` through the proxy, sampled in a loop.
- ``hub_cpu_s_per_spawn`` and ``hub_loop_lag_ms``: measured **inside** the hub
  process by ``bench/hub_probe.py`` (CPU seconds of the hub process over the
  storm ÷ spawns; how late a 20 ms timer fires on the hub's event loop).
- ``arm_requests_per_spawn``: ARM requests the emulator logged during the
  storm ÷ spawns (``arm_by_route`` splits them; operation-status polls are
  ``OperationStatus``/``OperationResult``).
- ``failures``: spawns that did not succeed, by the reason the hub logged.

``vs_baseline`` divides the AML figures by the baseline's, and ``targets``
reports issue 16's targets as met or not (reported here, not asserted).

The script imports test helpers from ``tests/support`` by putting ``tests/``
on ``sys.path`` (they are not part of the installed package). Run it with
``make bench`` or ``.venv/bin/python bench/spawn_storm.py --users 20``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "tests"))  # for support.hub / support.signin (test helpers, not packaged)
sys.path.insert(0, str(BENCH))

import hub_probe  # noqa: E402
from aml_jupyterhub.emulator.client import EmulatorControl  # noqa: E402
from aml_jupyterhub.emulator.core.config import EmulatorConfig, User, default_config, stable_id  # noqa: E402
from support.hub import HubProcess, wait_for  # noqa: E402
from support.signin import hub_sign_in  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=100, help="concurrent users (default 100)")
    p.add_argument("--concurrency", type=int, default=0, help="parallel spawn requests (default: --users, at most 200)")
    p.add_argument("--signin-concurrency", type=int, default=8, help="parallel browser sign-ins")
    p.add_argument("--create-seconds", type=float, default=20.0, help="emulated compute-instance creation time")
    p.add_argument("--setup-seconds", type=float, default=1.0, help="emulated startup-script time after a create")
    p.add_argument("--start-seconds", type=float, default=10.0, help="emulated start time (reused instances)")
    p.add_argument("--stop-seconds", type=float, default=5.0, help="emulated stop time")
    p.add_argument("--delete-seconds", type=float, default=1.0, help="emulated delete time")
    p.add_argument("--poll-interval", type=float, default=5.0, help="AMLSpawner.poll_interval_seconds (shared list)")
    p.add_argument("--fast-poll-interval", type=float, default=0.5, help="AMLSpawner.fast_poll_interval_seconds")
    p.add_argument("--reuse", action=argparse.BooleanOptionalAction, default=True,
                   help="after stopping everyone, storm again: spawns start the existing instances (default: on)")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the storms with the null spawner first (default: on)")
    p.add_argument("--idle-seconds", type=float, default=10.0, help="idle hub-latency sampling before the storm")
    p.add_argument("--steady-seconds", type=float, default=60.0, help="steady-state window with everyone running (aml)")
    p.add_argument("--spawn-timeout", type=float, default=900.0, help="give up on a spawn after this long")
    p.add_argument("--ready-poll", type=float, default=0.5, help="how often the hub log is read for started/failed spawns")
    p.add_argument("--unthrottled", action="store_true", help="raise the emulated ARM throttle far above Azure's")
    p.add_argument("--db-dir", default="/dev/shm" if Path("/dev/shm").is_dir() else "",
                   help="directory of the hubs' sqlite databases (default /dev/shm: JupyterHub commits on its event "
                        "loop, so on a shared disk fsync stalls dominate every figure); empty: the hub's work directory")
    p.add_argument("--user-space", action=argparse.BooleanOptionalAction, default=True,
                   help="the AML hub prepares each user's file share and its server's access policy on every "
                        "spawn, as a deployment with c.UserSpace does (default: on)")
    p.add_argument("--lro-retry-after", type=int, default=1, help="the emulator's Retry-After on operations (seconds)")
    args = p.parse_args(argv)
    args.concurrency = args.concurrency or min(args.users, 200)
    return args


# -- the emulated directory and the emulator process ----------------------------------
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


class EmulatorProcess:
    """``python -m aml_jupyterhub.emulator`` in its own process; its endpoints from the JSON line it prints."""

    def __init__(self, workdir: Path, config: EmulatorConfig) -> None:
        config_path = workdir / "emulator-config.json"
        config_path.write_text(json.dumps(config.to_dict()))
        self.endpoints_file = workdir / "endpoints.json"
        self.log_path = workdir / "emulator.log"
        self.storage_key = config.storage_accounts[0].key
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aml_jupyterhub.emulator", "--config", str(config_path),
             "--endpoints-file", str(self.endpoints_file), "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=open(self.log_path, "ab"), stdin=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            raise RuntimeError(f"the emulator did not start (log: {self.log_path})")
        self.endpoints = json.loads(line)["emulator"]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the emulator process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)


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


class Hub:
    """A benchmark hub: the HubProcess, its in-hub probe and its latency sampler."""

    def __init__(self, workdir: Path, emulator: EmulatorProcess, args: argparse.Namespace, spawner: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.spawner = spawner
        self.probe_path = workdir / "probe.jsonl"
        extra = f"""
        import sys
        sys.path.insert(0, {str(BENCH)!r})
        import hub_probe
        hub_probe.install({str(self.probe_path)!r})
        c.JupyterHub.concurrent_spawn_limit = {max(100, args.users)}
        c.JupyterHub.log_level = "INFO"
        c.Spawner.start_timeout = {int(args.spawn_timeout)}
        c.AMLSpawner.fast_poll_interval_seconds = {args.fast_poll_interval}
        """
        self.db_dir = Path(tempfile.mkdtemp(prefix=f"spawn-storm-{spawner}-db-", dir=args.db_dir)) if args.db_dir else None
        if self.db_dir:
            extra += f"""
        c.JupyterHub.db_url = "sqlite:///{self.db_dir / 'jupyterhub.sqlite'}"
        """
        if spawner == "null":
            extra += f"""
        c.JupyterHub.spawner_class = "null_spawner.NullSpawner"
        c.NullSpawner.create_seconds = {args.create_seconds + args.setup_seconds}
        c.NullSpawner.start_seconds = {args.start_seconds}
        c.NullSpawner.stop_seconds = {args.stop_seconds}
        """
        env = {"AML_DEMO_SPAWNER": "aml", "AML_POLL_INTERVAL": str(args.poll_interval)}
        if args.user_space and spawner == "aml":
            env["AML_USERSPACE_ACCOUNT_KEY"] = emulator.storage_key
        self.process = HubProcess(workdir, emulator.endpoints_file, extra_config=extra, env=env).start()
        self.sampler = LatencySampler(f"{self.process.url}/hub/api/")

    def inside(self, start: float, end: float) -> dict:
        """What the probe saw inside the hub between two monotonic times (waits for its next line)."""
        try:
            wait_for(lambda: any(line["t"] >= end for line in hub_probe.read(str(self.probe_path))), 10, 0.2, "the probe")
        except TimeoutError:
            pass
        return hub_probe.window(hub_probe.read(str(self.probe_path)), start, end)

    def stop(self) -> None:
        self.sampler.done.set()
        self.process.stop()
        if self.db_dir:
            shutil.rmtree(self.db_dir, ignore_errors=True)


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


def all_stopped(states: dict[str, str], users: list[str]) -> bool:
    """Whether none of ``users`` has a server (one listing of the hub for all of them)."""
    return all(states.get(u) == "none" for u in users)


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


STARTED = re.compile(r"^\[I (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \S+ \S+\] User (\S+) took [\d.]+ seconds to start", re.M)
FAILED = re.compile(r"(?:Unhandled error starting |Error starting |Not starting )?(\S+?)'s server(?: failed to start|[^:\n]*: )(.*)")


def ready_times(hub_log: str) -> dict[str, float]:
    """username -> wall-clock time JupyterHub logged the server as started (the log's local time)."""
    return {user: datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp() for stamp, user in STARTED.findall(hub_log)}


def failed_starts(hub_log: str) -> dict[str, str]:
    """username -> why, for every spawn the hub logged as failed."""
    found = {}
    for line in hub_log.splitlines():
        if "starting" in line and "'s server" in line or "failed to start in" in line:
            m = FAILED.search(line)
            if m:
                found[m.group(1)] = m.group(2).strip() or "failed to start"
    return found


class LogTail:
    """What a growing log file gained since the last read (cheap: the hub is not asked anything)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, path.stat().st_size if path.exists() else 0

    def read(self) -> str:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        cut = data.rfind(b"\n") + 1  # whole lines only
        self.offset += cut
        return data[:cut].decode(errors="replace")


# -- one storm ----------------------------------------------------------------------------------
def storm(hub: HubProcess, users: list[str], args: argparse.Namespace) -> tuple[dict[str, float], dict, float, float]:
    """POST every user's server at once and follow the hub log until each has started or failed.

    Returns ({user: seconds from POST to started}, {user: failure}, storm start, storm end) (monotonic).
    The hub is not polled while the storm runs, so watching costs it nothing.
    """
    posted: dict[str, float] = {}  # wall clock, to compare with the hub log's
    failures: dict[str, str] = {}
    tail = LogTail(hub.log_path)

    def post(username: str) -> None:
        posted[username] = time.time()
        r = hub.api("POST", f"/users/{username}/server", json={"user_options": {}})
        if r.status_code not in (201, 202):
            failures[username] = f"POST {r.status_code}: {r.text[:200]}"

    start = time.monotonic()
    poster = threading.Thread(target=run_all, args=(post, users, args.concurrency), daemon=True)
    poster.start()
    started: dict[str, float] = {}
    wanted = set(users)
    while len(wanted & (set(started) | set(failures))) < len(users) and time.monotonic() - start < args.spawn_timeout:
        time.sleep(args.ready_poll)
        text = tail.read()
        started.update({u: t for u, t in ready_times(text).items() if u in wanted})
        for user, why in failed_starts(text).items():
            if user in wanted and user not in started:
                failures.setdefault(user, why)
    end = time.monotonic()
    poster.join(timeout=60)
    # The hub's own word on who is ready. JupyterHub logs "took ... to start" before it adds the
    # proxy route, and a server is ready only after that: wait (bounded) while any is still pending.
    deadline = time.monotonic() + 60
    states = server_states(hub)
    while any(states.get(u) == "pending" for u in started) and time.monotonic() < deadline:
        time.sleep(1.0)
        states = server_states(hub)
    for username in users:
        if username not in failures and (username not in started or states.get(username) != "ready"):
            if username not in started:
                failures[username] = f"not ready after {args.spawn_timeout}s"
            else:
                failures[username] = "started, then gone" if states.get(username) == "none" else "started, never ready"
    return {u: t - posted[u] for u, t in started.items() if u not in failures}, failures, start, end


def explain(failures: dict[str, str]) -> dict:
    """Failures counted by reason (the hub's own, from its log)."""
    return {"count": len(failures), "by_reason": dict(Counter(failures.values()))}


def stop_all(hub: HubProcess, users: list[str], args: argparse.Namespace) -> dict:
    """DELETE every user's server and wait until none is left; {user: failure}."""

    def stop(username: str) -> None:
        r = hub.api("DELETE", f"/users/{username}/server")
        if r.status_code not in (202, 204, 400):  # 400: no server to stop
            raise RuntimeError(f"DELETE {r.status_code}: {r.text[:200]}")

    _, failures = run_all(stop, users, args.concurrency)
    try:
        wait_for(lambda: all_stopped(server_states(hub), users), args.spawn_timeout, 2.0, "all stopped")
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


def storm_report(hub: Hub, control: EmulatorControl, emulator: EmulatorProcess, users: list[str],
                 reused: set[str], args: argparse.Namespace) -> dict:
    """One storm, measured: overhead, hub latency, CPU and loop lag during it, ARM traffic."""
    created = args.create_seconds + args.setup_seconds
    provisioning = {u: args.start_seconds if u in reused else created for u in users}
    mark, emulator_cpu = control.mark(), emulator.cpu_seconds()
    ready, failures, start, end = storm(hub.process, users, args)
    emulator_cpu = emulator.cpu_seconds() - emulator_cpu
    arm = arm_counts(control, mark)
    files = control.request_counts(since=mark, service="files")
    overhead = [t - provisioning[u] for u, t in ready.items()]
    inside = hub.inside(start, end)
    spawns = max(1, len(users))
    return {
        "instances": {"created": len(users) - len(reused), "started": len(reused)},
        "ready": len(ready),
        "wall_s": round(end - start, 1),
        "time_to_ready_s": summary(list(ready.values()), 50, 95),
        "spawn_overhead_s": summary(overhead, 50, 95),
        "hub_api_latency_ms": hub.sampler.window(start, end),
        "hub_cpu_s_per_spawn": None if inside["cpu_s"] is None else round(inside["cpu_s"] / spawns, 4),
        "hub_cpu_s": inside["cpu_s"],
        "hub_loop_lag_ms": summary(inside["lags_ms"], 50, 99),
        "emulator_cpu_s": round(emulator_cpu, 1),
        "arm_requests": arm["total"],
        "arm_requests_per_spawn": round(arm["total"] / spawns, 2),
        "arm_throttled_429": arm["throttled_429"],
        "arm_by_route": arm["by_route"],
        "files_requests_per_spawn": round(files["total"] / spawns, 2),
        "files_by_route": files["by_route"],
        "failures": explain(failures),
    }


def steady_state(hub: Hub, control: EmulatorControl, seconds: float) -> dict:
    """Everyone running: ARM requests per minute (the shared poller), hub latency and loop lag."""
    mark, start = control.mark(), time.monotonic()
    time.sleep(seconds)
    arm = arm_counts(control, mark)
    end = time.monotonic()
    return {
        "seconds": seconds,
        "arm_requests_per_minute": round(arm["total"] * 60 / seconds, 1),
        "arm_throttled_429": arm["throttled_429"],
        "arm_by_route": arm["by_route"],
        "hub_api_latency_ms": hub.sampler.window(start, end),
        "hub_loop_lag_ms": summary(hub.inside(start, end)["lags_ms"], 50, 99),
    }


def run_hub(kind: str, workdir: Path, emulator: EmulatorProcess, control: EmulatorControl, users: list[str],
            args: argparse.Namespace) -> dict:
    """Sign everyone in to a fresh hub with ``kind`` ("null" or "aml") spawners and run the storms."""
    hub = Hub(workdir / f"hub-{kind}", emulator, args, kind)
    report: dict = {"hub_log": str(hub.process.log_path)}
    try:
        t0 = time.monotonic()
        signin_times, signin_failures = sign_in_all(hub.process, users, emulator.endpoints["ca_bundle"], args.signin_concurrency)
        report["sign_in"] = {"wall_s": round(time.monotonic() - t0, 1), **summary(signin_times, 50, 95)}
        hub.sampler.start()
        idle_start = time.monotonic()
        time.sleep(args.idle_seconds)
        idle_end = time.monotonic()
        report["idle"] = {"hub_api_latency_ms": hub.sampler.window(idle_start, idle_end),
                          "hub_loop_lag_ms": summary(hub.inside(idle_start, idle_end)["lags_ms"], 50, 99)}
        spawnable = [u for u in users if u not in signin_failures]
        reused = users_with_instances(control) if kind == "aml" else set()
        report["create_storm"] = storm_report(hub, control, emulator, spawnable, reused & set(spawnable), args)
        if kind == "aml" and args.steady_seconds > 0:
            report["steady_state"] = steady_state(hub, control, args.steady_seconds)
        stop_failures = stop_all(hub.process, spawnable, args)
        if args.reuse:
            reused = users_with_instances(control) if kind == "aml" else set(spawnable)
            report["reuse_storm"] = storm_report(hub, control, emulator, spawnable, reused & set(spawnable), args)
            stop_failures.update(stop_all(hub.process, spawnable, args))
        report["failures"] = {
            "sign_in": signin_failures,
            "spawn": sum(report[k]["failures"]["count"] for k in ("create_storm", "reuse_storm") if k in report),
            "stop": stop_failures,
        }
    finally:
        hub.stop()
    return report


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)


def compare(aml: dict, null: dict) -> dict:
    """AML figures ÷ the null spawner's, per storm."""
    out = {}
    for storm_name in ("create_storm", "reuse_storm"):
        if storm_name in aml and storm_name in null:
            a, n = aml[storm_name], null[storm_name]
            out[storm_name] = {
                "hub_cpu_per_spawn": ratio(a["hub_cpu_s_per_spawn"], n["hub_cpu_s_per_spawn"]),
                "hub_api_p99": ratio(a["hub_api_latency_ms"]["p99"], n["hub_api_latency_ms"]["p99"]),
                "hub_loop_lag_p99": ratio(a["hub_loop_lag_ms"]["p99"], n["hub_loop_lag_ms"]["p99"]),
                "spawn_overhead_p95_minus_baseline_s": None if a["spawn_overhead_s"]["p95"] is None
                or n["spawn_overhead_s"]["p95"] is None
                else round(a["spawn_overhead_s"]["p95"] - n["spawn_overhead_s"]["p95"], 3),
            }
    return out


def targets(report: dict) -> dict:
    """Issue 16's targets, as met (True) or not; reported, never asserted."""
    aml, null = report["aml"], report.get("baseline") or {}
    idle_p99 = aml["idle"]["hub_api_latency_ms"]["p99"] or 0
    out = {}
    for storm_name in ("create_storm", "reuse_storm"):
        if storm_name not in aml:
            continue
        s = aml[storm_name]
        base_cpu = (null.get(storm_name) or {}).get("hub_cpu_s_per_spawn")
        checks = {
            "failures == 0": s["failures"]["count"] == 0,
            "hub API p99 <= 500 ms": (s["hub_api_latency_ms"]["p99"] or 0) <= 500,
        }
        if report["users"] <= 100:
            checks.update({
                "spawn overhead p95 <= 1.0 s": s["spawn_overhead_s"]["p95"] is not None and s["spawn_overhead_s"]["p95"] <= 1.0,
                "hub API p99 <= 3x idle p99": (s["hub_api_latency_ms"]["p99"] or 0) <= 3 * idle_p99,
                "ARM requests per spawn <= 3": s["arm_requests_per_spawn"] <= 3,
                "hub CPU per spawn <= 2x baseline": None if not base_cpu else s["hub_cpu_s_per_spawn"] <= 2 * base_cpu,
            })
        out[storm_name] = checks
    return out


# -- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="spawn-storm-"))
    config = bench_config(args.users)
    users = storm_users(config)
    emulator = EmulatorProcess(workdir, config)
    control = EmulatorControl(emulator.endpoints["control"], emulator.endpoints["ca_bundle"])
    timings = {"create": args.create_seconds, "setup": args.setup_seconds, "start": args.start_seconds,
               "stop": args.stop_seconds, "delete": args.delete_seconds, "lro_retry_after": args.lro_retry_after}
    control.update_settings(timings=timings)
    if args.unthrottled:
        control.update_settings(throttle={"read_burst": 10**6, "read_rate": 10**6, "write_burst": 10**6, "write_rate": 10**6})
    report: dict = {
        "command": "bench/spawn_storm.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "users": args.users, "concurrency": args.concurrency, "poll_interval_s": args.poll_interval,
        "fast_poll_interval_s": args.fast_poll_interval, "hub_db_dir": args.db_dir or "(work directory)", "user_space": args.user_space, "timings_s": timings, "throttle": control.settings()["throttle"],
        "cpus": os.cpu_count(), "workdir": str(workdir),
    }
    try:
        if args.baseline:
            report["baseline"] = run_hub("null", workdir, emulator, control, users, args)
        report["aml"] = run_hub("aml", workdir, emulator, control, users, args)
        if args.baseline:
            report["vs_baseline"] = compare(report["aml"], report["baseline"])
        report["targets"] = targets(report)
    finally:
        emulator.stop()
    report["runtime_s"] = round(time.monotonic() - began, 1)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
