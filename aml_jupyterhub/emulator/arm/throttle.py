"""ARM throttling: token buckets per principal + subscription + region, reads and writes apart.

Azure's 2024+ model: a principal's bucket holds ``burst`` tokens and refills at
``rate`` per second; the whole subscription in a region has buckets 15 times
larger. Limits are read from ``config.throttle`` on every request, so a test
can lower them through ``/_emulator/settings``. Buckets are runtime-only.
Source: docs/emulator-fidelity.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ..core.handlers import ServiceError
from ..core.state import EmulatorState

SUBSCRIPTION_FACTOR = 15


@dataclass
class Bucket:
    tokens: float
    updated: float

    def refill(self, burst: float, rate: float, now: float) -> None:
        self.tokens = min(burst, self.tokens + (now - self.updated) * rate)
        self.updated = now


class Throttle:
    """The buckets of one emulator."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.buckets: dict[tuple[str, str, str, str], Bucket] = {}

    def limits(self, write: bool) -> tuple[float, float]:
        cfg = self.state.config.throttle
        return (float(cfg.write_burst), float(cfg.write_rate)) if write else (float(cfg.read_burst), float(cfg.read_rate))

    def take(self, principal: str, subscription: str, region: str, write: bool) -> dict[str, str]:
        """Spend a token from the principal's and the subscription's bucket.

        Returns the ``x-ms-ratelimit-remaining-subscription-*`` header, or
        raises 429 TooManyRequests with ``Retry-After`` (whole seconds until a
        token is back) and that header.
        """
        burst, rate = self.limits(write)
        kind = "writes" if write else "reads"
        now = time.monotonic()
        scope = (subscription.lower(), region.lower(), kind)
        pairs = [(self._bucket(("principal:" + principal.lower(), *scope), burst, now), burst, rate)]
        pairs.append((self._bucket(("subscription", *scope), burst * SUBSCRIPTION_FACTOR, now), burst * SUBSCRIPTION_FACTOR, rate * SUBSCRIPTION_FACTOR))
        for bucket, size, refill in pairs:
            bucket.refill(size, refill, now)
        header = f"x-ms-ratelimit-remaining-subscription-{kind}"
        short = [(bucket, refill) for bucket, _, refill in pairs if bucket.tokens < 1]
        if short:
            retry_after = max(seconds_until_token(bucket, refill) for bucket, refill in short)
            raise ServiceError(
                429,
                "TooManyRequests",
                "The request is being throttled as the limit has been reached for operation type - "
                f"{'Write' if write else 'Read'}. For more information, see - https://aka.ms/armthrottling",
                {"Retry-After": str(retry_after), header: "0"},
            )
        for bucket, _, _ in pairs:
            bucket.tokens -= 1
        return {header: str(int(min(bucket.tokens for bucket, _, _ in pairs)))}

    def _bucket(self, key: tuple[str, str, str, str], burst: float, now: float) -> Bucket:
        return self.buckets.setdefault(key, Bucket(burst, now))


def seconds_until_token(bucket: Bucket, rate: float) -> int:
    """Whole seconds until ``bucket`` holds a token again (at least 1)."""
    return max(1, math.ceil((1 - bucket.tokens) / rate)) if rate > 0 else 3600


def throttle(state: EmulatorState) -> Throttle:
    """The state's throttle (created on first use, dropped by ``state.reset()``)."""
    if "arm_throttle" not in state.runtime:
        state.runtime["arm_throttle"] = Throttle(state)
    return state.runtime["arm_throttle"]
