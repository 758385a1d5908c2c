"""Load a cluster topology from TOML into :mod:`config.schema` classes.

    cluster = load_config("config/local.toml")

Structure (types, unknown keys) is checked by cattrs with strict scalar
hooks, so ``tick_size = 0.01`` (a float) is refused rather than silently
turned into a string; the topology rules (unique names and addresses, valid
markets, sane timing) are checked afterwards. Every problem is reported as a
:class:`ConfigError` naming the file, the key path and what is wrong, all
problems at once.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import cattrs

from config.schema import ClusterConfig, GatewayConfig, MarketConfig, ReplicaConfig

_MARKET_NAME = re.compile(r"^[A-Z0-9-]{1,32}$")
_NODE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ConfigError(ValueError):
    """A topology file that cannot be used; ``problems`` are ``(key path, what is wrong)``."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [
            f"{source}: {path}: {what}" if path else f"{source}: {what}" for path, what in problems
        ]
        super().__init__("\n".join(lines))


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")
    return value


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__} {value!r}")
    return value


def _strict_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__} {value!r}")
    return value


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(bool, _strict_bool)
    return converter


_CONVERTER = _make_converter()


def parse_address(address: str) -> tuple[str, int]:
    """Split ``"host:port"`` (``"[::1]:port"`` for IPv6); raises ValueError when malformed."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is outside 1..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def _format_exception(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, TypeError | ValueError) and str(exc).startswith("expected"):
        return str(exc)  # one of our strict hooks: already a sentence
    return cattrs.v.format_exception(exc, type_)


def _split_cattrs_message(message: str) -> tuple[str, str]:
    what, _, path = message.rpartition(" @ ")
    if not _:
        return "", message
    path = path.removeprefix("$").removeprefix(".")
    return path, what


def structure_config(data: dict[str, Any], source: str = "<config>") -> ClusterConfig:
    """Turn a decoded TOML document into a validated :class:`ClusterConfig`."""
    try:
        cluster = _CONVERTER.structure(data, ClusterConfig)
    except Exception as exc:  # cattrs raises ClassValidationError / plain errors
        messages = cattrs.transform_error(exc, path="$", format_exception=_format_exception)
        raise ConfigError(source, [_split_cattrs_message(m) for m in messages]) from exc
    problems = list(_topology_problems(cluster))
    if problems:
        raise ConfigError(source, problems)
    return cluster


def load_config(path: str | Path) -> ClusterConfig:
    """Read and validate a topology file; raises :class:`ConfigError`."""
    source = str(path)
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(source, [("", f"cannot read: {exc.strerror or exc}")]) from exc
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [("", f"not valid TOML: {exc}")]) from exc
    return structure_config(data, source)


def _positive_decimal(text: str) -> str | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return f"expected a decimal number as a string, got {text!r}"
    if not value.is_finite() or value <= 0:
        return f"must be a positive decimal, got {text!r}"
    return None


def _market_problems(index: int, market: MarketConfig) -> Iterator[tuple[str, str]]:
    where = f"markets[{index}]"
    if not _MARKET_NAME.match(market.name):
        yield f"{where}.name", f"market name must be 1-32 of A-Z, 0-9, '-', got {market.name!r}"
    for key in ("tick_size", "lot_size"):
        problem = _positive_decimal(getattr(market, key))
        if problem:
            yield f"{where}.{key}", problem
    if market.max_live_orders_per_user < 0:
        yield (
            f"{where}.max_live_orders_per_user",
            f"must be 0 (no cap) or positive, got {market.max_live_orders_per_user}",
        )
    if not market.replicas:
        yield f"{where}.replicas", "a market needs at least one replica"
    elif not market.initial_voters():
        yield f"{where}.replicas", "every replica has join = true; at least one must be initial"
    for r_index, replica in enumerate(market.replicas):
        if not _NODE_NAME.match(replica.name):
            yield (
                f"{where}.replicas[{r_index}].name",
                f"replica name must be 1-64 of A-Z, a-z, 0-9, '_.-', got {replica.name!r}",
            )
        if not replica.data_dir:
            yield f"{where}.replicas[{r_index}].data_dir", "must not be empty"


def _topology_problems(cluster: ClusterConfig) -> Iterator[tuple[str, str]]:
    if not cluster.cluster_id:
        yield "cluster_id", "must not be empty"
    if cluster.secret_file is not None and not cluster.secret_file:
        yield "secret_file", "must not be empty (leave it out to accept any connection)"
    if not cluster.markets:
        yield "markets", "at least one market is required"
    timing = cluster.timing
    for key in ("tick_ms", "election_ticks", "heartbeat_ticks"):
        if getattr(timing, key) <= 0:
            yield f"timing.{key}", f"must be positive, got {getattr(timing, key)}"
    if timing.heartbeat_ticks >= timing.election_ticks:
        yield "timing.heartbeat_ticks", "must be smaller than timing.election_ticks"

    market_names: dict[str, str] = {}
    replica_names: dict[str, str] = {}
    addresses: dict[str, str] = {}
    data_dirs: dict[str, str] = {}

    def claim(seen: dict[str, str], value: str, path: str, kind: str) -> Iterator[tuple[str, str]]:
        if value in seen:
            yield path, f"duplicate {kind} {value!r} (also at {seen[value]})"
        else:
            seen[value] = path

    def address(value: str | None, path: str) -> Iterator[tuple[str, str]]:
        if value is None:
            return
        try:
            host, port = parse_address(value)
        except ValueError as exc:
            yield path, str(exc)
            return
        yield from claim(addresses, f"{host}:{port}", path, "address")

    for index, market in enumerate(cluster.markets):
        yield from _market_problems(index, market)
        yield from claim(market_names, market.name, f"markets[{index}].name", "market")
        for r_index, replica in enumerate(market.replicas):
            where = f"markets[{index}].replicas[{r_index}]"
            yield from claim(replica_names, replica.name, f"{where}.name", "replica name")
            yield from claim(data_dirs, replica.data_dir, f"{where}.data_dir", "data_dir")
            yield from address(replica.raft, f"{where}.raft")
            yield from address(replica.client, f"{where}.client")
            yield from address(replica.metrics, f"{where}.metrics")
            yield from _replica_tls_problems(cluster, replica, where)
    gateway_names: dict[str, str] = {}
    for index, gateway in enumerate(cluster.gateways):
        where = f"gateways[{index}]"
        yield from claim(gateway_names, gateway.name, f"{where}.name", "gateway name")
        yield from address(gateway.listen, f"{where}.listen")
        yield from address(gateway.metrics, f"{where}.metrics")
        yield from _gateway_tls_problems(gateway, where)
    yield from _tls_problems(cluster)


def _tls_problems(cluster: ClusterConfig) -> Iterator[tuple[str, str]]:
    if cluster.tls is None:
        return
    for key in ("ca_file", "client_cert_file", "client_key_file"):
        if not getattr(cluster.tls, key):
            yield f"tls.{key}", "must not be empty (leave [tls] out for plain TCP)"


def _replica_tls_problems(
    cluster: ClusterConfig, replica: ReplicaConfig, where: str
) -> Iterator[tuple[str, str]]:
    """With [tls] every replica names its certificate and key; without it, none does."""
    for key in ("cert_file", "key_file"):
        value = getattr(replica, key)
        if cluster.tls is None and value is not None:
            yield f"{where}.{key}", "set, but there is no [tls] table (its ca_file is needed)"
        elif cluster.tls is not None and not value:
            yield (
                f"{where}.{key}",
                "required when [tls] is set (this replica's TLS "
                + ("certificate)" if key == "cert_file" else "private key)"),
            )


def _gateway_tls_problems(gateway: GatewayConfig, where: str) -> Iterator[tuple[str, str]]:
    """A gateway serves wss:// with both a certificate and a key, ws:// with neither."""
    cert, key = gateway.cert_file, gateway.key_file
    if cert is not None and not cert:
        yield f"{where}.cert_file", "must not be empty (leave it out to serve ws://)"
    if key is not None and not key:
        yield f"{where}.key_file", "must not be empty (leave it out to serve ws://)"
    if cert is not None and key is None:
        yield f"{where}.key_file", "required with cert_file (the certificate's private key)"
    if key is not None and cert is None:
        yield f"{where}.cert_file", "required with key_file"
