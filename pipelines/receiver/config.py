"""The receiver's settings, resolved once (CLI) into a frozen object the app is built from."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_MAX_BODY_MB = "WEARHOUSE_MAX_BODY_MB"
ENV_ALLOW = "WEARHOUSE_RECEIVER_ALLOW"
ENV_TRUSTED_PROXIES = "WEARHOUSE_RECEIVER_TRUSTED_PROXIES"
ENV_CLIENT_ID = "WEARHOUSE_RECEIVER_CLIENT_ID"
ENV_BODY_TIMEOUT_S = "WEARHOUSE_RECEIVER_BODY_TIMEOUT_S"
ENV_WORKERS = "WEARHOUSE_RECEIVER_WORKERS"

DEFAULT_MAX_BODY_MB = 100.0
# Garmin wants its answer within 30 s; a body still arriving after this is a stalled or hostile
# client, and the bound also limits how long a temp file can legitimately stay unrenamed.
DEFAULT_BODY_TIMEOUT_S = 60.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class ConfigError(ValueError):
    """A receiver setting that cannot be used (the message names the variable)."""


def parse_networks(text: str | Iterable[str], name: str = "networks") -> tuple[Network, ...]:
    """Comma-separated CIDRs (or bare addresses) → networks; empty → ()."""
    items = text.split(",") if isinstance(text, str) else list(text)
    networks = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ConfigError(f"{name}: {item!r} is not an IP network (CIDR)") from exc
    return tuple(networks)


def parse_address(text: str) -> Address | None:
    """An IP address, IPv4-mapped IPv6 (``::ffff:1.2.3.4``, dual-stack sockets) as IPv4;
    None when ``text`` is not an address."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: Address | None, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


@dataclass(frozen=True)
class ReceiverConfig:
    """Everything the receiver needs; built once, never read from the environment again."""

    landing: Path
    max_body_bytes: int = int(DEFAULT_MAX_BODY_MB * (1 << 20))
    # Source networks allowed to post (empty: any). Checked against the client address, which
    # is the forwarded-for address only when the peer is a trusted proxy.
    allow: tuple[Network, ...] = ()
    trusted_proxies: tuple[Network, ...] = ()
    # Expected `garmin-client-id` header value (the partner's consumer key); None: not checked.
    client_id: str | None = None
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    # Server processes sharing the listening socket (each with its own I/O threads).
    workers: int = 1

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise ConfigError(f"{ENV_MAX_BODY_MB}: the body limit must be positive")
        if self.body_timeout_s <= 0:
            raise ConfigError(f"{ENV_BODY_TIMEOUT_S}: must be positive")
        if self.workers < 1 or self.workers != int(self.workers):
            raise ConfigError(f"{ENV_WORKERS}: a whole number of processes, at least 1")
        if self.client_id is not None and not self.client_id:
            raise ConfigError(f"{ENV_CLIENT_ID}: empty (unset it to skip the check)")

    @classmethod
    def resolve(cls, landing: Path, environ: Mapping[str, str] | None = None) -> ReceiverConfig:
        """The receiver's settings from the environment (``landing`` from ``Settings``)."""
        env = os.environ if environ is None else environ
        return cls(
            landing=Path(landing),
            max_body_bytes=_megabytes(env.get(ENV_MAX_BODY_MB), ENV_MAX_BODY_MB),
            allow=parse_networks(env.get(ENV_ALLOW, ""), ENV_ALLOW),
            trusted_proxies=parse_networks(env.get(ENV_TRUSTED_PROXIES, ""), ENV_TRUSTED_PROXIES),
            client_id=env.get(ENV_CLIENT_ID) or None,
            body_timeout_s=_positive(
                env.get(ENV_BODY_TIMEOUT_S), DEFAULT_BODY_TIMEOUT_S, ENV_BODY_TIMEOUT_S
            ),
            workers=_whole(env.get(ENV_WORKERS), ENV_WORKERS),
        )


def _positive(text: str | None, default: float, name: str) -> float:
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: {text!r} is not a number") from exc
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}: must be a positive number, not {text!r}")
    return value


def _whole(text: str | None, name: str) -> int:
    value = _positive(text, 1, name)
    if value != int(value):
        raise ConfigError(f"{name}: a whole number, not {text!r}")
    return int(value)


def _megabytes(text: str | None, name: str) -> int:
    """MB as MiB (1 MB = 2**20 bytes), fractions allowed (tests set tiny limits)."""
    return max(1, int(_positive(text, DEFAULT_MAX_BODY_MB, name) * (1 << 20)))
