"""``clob node``: run one replica as an OS process until SIGTERM or SIGINT.

Loads the topology, configures logging, serves metrics on the replica's
metrics address, and runs :class:`~shard.node.runtime.Replica` in a nursery
that a signal cancels: the replica then stops its tasks and closes its
storage (everything acknowledged is already durable; a kill -9 loses nothing
acknowledged either, it only skips the tidy close).
"""

from __future__ import annotations

import signal

import trio

from config.load import load_config
from config.schema import ClusterConfig
from shard.node.gctuning import tune_for_throughput
from shard.node.metrics import NodeMetrics
from shard.node.options import ReplicaOptions
from shard.node.runtime import Replica
from shard.observability import get_logger


async def run_node(
    cluster: ClusterConfig,
    name: str,
    options: ReplicaOptions | None = None,
    *,
    task_status: trio.TaskStatus[Replica] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run replica ``name`` until cancelled or signalled."""
    log = get_logger("shard.node", node=name)
    found = cluster.replica(name)
    if found is None:
        raise ValueError(f"no replica named {name!r} in the topology")
    market, me = found
    metrics = NodeMetrics(name, market.name)
    if me.metrics is not None:
        metrics.serve(me.metrics)
    replica = Replica(cluster, name, options or ReplicaOptions(), metrics=metrics)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(replica.serve)
            task_status.started(replica)
            async for signum in signals:
                log.info("shutting down", signal=signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
    log.info("stopped")


def main(config_path: str, name: str, options: ReplicaOptions | None = None) -> None:
    """Entry point of ``clob node``."""
    cluster = load_config(config_path)
    tune_for_throughput()
    trio.run(run_node, cluster, name, options)
