"""A :class:`config.schema.ClusterConfig` written back as TOML (the inverse of config.load)."""

from __future__ import annotations

from pathlib import Path

from config.load import load_config
from config.schema import ClusterConfig


def _toml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_toml(cluster: ClusterConfig) -> str:
    """The TOML text that :func:`config.load.load_config` reads back as ``cluster``."""
    lines = [
        f"cluster_id = {_toml_str(cluster.cluster_id)}",
        f"durability = {_toml_str(cluster.durability)}",
        f"keys_file = {_toml_str(cluster.keys_file)}",
        *([f"secret_file = {_toml_str(cluster.secret_file)}"] if cluster.secret_file else []),
        *_tls_lines(cluster),
        "",
        "[timing]",
        f"tick_ms = {cluster.timing.tick_ms}",
        f"election_ticks = {cluster.timing.election_ticks}",
        f"heartbeat_ticks = {cluster.timing.heartbeat_ticks}",
    ]
    for market in cluster.markets:
        lines += [
            "",
            "[[markets]]",
            f"name = {_toml_str(market.name)}",
            f"tick_size = {_toml_str(market.tick_size)}",
            f"lot_size = {_toml_str(market.lot_size)}",
            f"max_live_orders_per_user = {market.max_live_orders_per_user}",
        ]
        for r in market.replicas:
            lines += [
                "",
                "[[markets.replicas]]",
                f"name = {_toml_str(r.name)}",
                f"raft = {_toml_str(r.raft)}",
                f"client = {_toml_str(r.client)}",
                f"data_dir = {_toml_str(r.data_dir)}",
            ]
            if r.metrics is not None:
                lines.append(f"metrics = {_toml_str(r.metrics)}")
            if r.join:
                lines.append("join = true")
            lines += _files(r.cert_file, r.key_file)
    for gateway in cluster.gateways:
        lines += [
            "",
            "[[gateways]]",
            f"name = {_toml_str(gateway.name)}",
            f"listen = {_toml_str(gateway.listen)}",
        ]
        if gateway.metrics is not None:
            lines.append(f"metrics = {_toml_str(gateway.metrics)}")
        lines += _files(gateway.cert_file, gateway.key_file)
    return "\n".join(lines) + "\n"


def _tls_lines(cluster: ClusterConfig) -> list[str]:
    tls = cluster.tls
    if tls is None:
        return []
    return [
        "",
        "[tls]",
        f"ca_file = {_toml_str(tls.ca_file)}",
        f"client_cert_file = {_toml_str(tls.client_cert_file)}",
        f"client_key_file = {_toml_str(tls.client_key_file)}",
    ]


def _files(cert_file: str | None, key_file: str | None) -> list[str]:
    lines = []
    if cert_file is not None:
        lines.append(f"cert_file = {_toml_str(cert_file)}")
    if key_file is not None:
        lines.append(f"key_file = {_toml_str(key_file)}")
    return lines


def write_config(cluster: ClusterConfig, path: Path) -> Path:
    """Write ``cluster`` and check that it loads back unchanged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_toml(cluster))
    loaded = load_config(path)
    assert loaded == cluster, (loaded, cluster)
    return path
