"""The replica's collector settings: young collections only, survivors frozen."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

from shard.node.metrics import NodeMetrics


def _passes_in_a_fresh_process(code: str) -> None:
    """Run ``code`` in its own interpreter: collector settings are process-wide."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok"]


_PROBE = textwrap.dedent(
    """
    import gc
    from shard.node.gctuning import YOUNG_THRESHOLD, frozen_objects, tune_for_throughput

    tune_for_throughput()
    tune_for_throughput()  # idempotent: one callback
    before = frozen_objects()
    kept = [[i] for i in range(3 * YOUNG_THRESHOLD)]  # long-lived: survives young collections
    gc.collect(0)
    assert frozen_objects() >= before + len(kept), (before, frozen_objects())
    # the older generations stay empty, so no collection ever walks the kept state
    assert gc.get_objects(generation=1) == [] and gc.get_objects(generation=2) == []
    # a young cycle that is garbage is still collected
    class Node:
        pass
    for _ in range(100):
        a, b = Node(), Node()
        a.other, b.other = b, a
    del a, b
    assert gc.collect(0) >= 200
    # nothing kept is lost: frozen objects are still freed by reference counting
    import weakref
    class Box:
        pass
    box = Box()
    gc.collect(0)
    ref = weakref.ref(box)
    del box
    assert ref() is None
    print("ok")
    """
)


def test_survivors_of_a_young_collection_are_frozen_and_cycles_still_die() -> None:
    _passes_in_a_fresh_process(_PROBE)


def test_the_frozen_population_is_a_metric() -> None:
    metrics = NodeMetrics("n1", "BTC-USD")
    rendered = metrics.render().decode()
    line = next(x for x in rendered.splitlines() if x.startswith("clob_gc_frozen_objects{"))
    assert float(line.rsplit(" ", 1)[1]) == gc.get_freeze_count()  # read when scraped


_UNDO = textwrap.dedent(
    """
    import gc
    from shard.node.gctuning import frozen_objects, tune_for_throughput, untune

    thresholds = gc.get_threshold()
    class Kept:
        pass
    holder = [Kept()]
    tune_for_throughput()
    assert holder not in gc.get_referrers(holder[0])  # frozen: invisible to the collector
    untune(thresholds)
    assert gc.get_threshold() == thresholds and frozen_objects() == 0
    assert not [c for c in gc.callbacks if "freeze" in getattr(c, "__name__", "")]
    assert holder in gc.get_referrers(holder[0])
    print("ok")
    """
)


def test_untune_thaws_everything_for_code_that_runs_on() -> None:
    _passes_in_a_fresh_process(_UNDO)
