"""A worker's progress reaches the run's state in the context actor coalesced: each shipment
carries what changed since the last one, and the task's report carries every final value."""

from __future__ import annotations

import threading

import pytest
import ray

from ray_backend.context_actor import RunChannel, RunsHost
from ray_backend.worker_runtime import WorkerRuntime

pytestmark = pytest.mark.usefixtures("ray_session")


def progress_of(events: list) -> list[tuple[str | None, float]]:
    return [(e.step, e.data["current"]) for e in events if e.kind == "progress"]


def test_each_shipment_carries_the_progress_that_changed_and_the_report_every_final_value() -> None:
    host = ray.remote(RunsHost).options(num_cpus=0).remote()
    try:
        channel = RunChannel(host, "run-1")
        runtime = WorkerRuntime({}, "job", channel, "execute:s:1", 60.0)
        runtime.set_progress(1, 10, step="a")
        runtime.set_progress(2, 10, step="a")  # coalesced with the one before
        runtime.set_progress(5, 5, step="b")
        ray.get(runtime._ship(), timeout=30)
        runtime.set_progress(3, 10, step="a")  # b unchanged: not sent again
        ray.get(runtime._ship(), timeout=30)
        assert runtime._ship() is None  # nothing changed: nothing shipped
        _, drained = ray.get(channel.send("drain"), timeout=30)
        assert progress_of(drained) == [("a", 2), ("b", 5), ("a", 3)]
        assert sorted(progress_of(runtime.take_pending())) == [("a", 3), ("b", 5)]
    finally:
        ray.kill(host, no_restart=True)


def test_progress_written_while_shipments_run_is_never_lost() -> None:
    """The step thread writes without a lock: shipments see it in order, and the report has the last value."""
    host = ray.remote(RunsHost).options(num_cpus=0).remote()
    try:
        channel = RunChannel(host, "run-2")
        runtime = WorkerRuntime({}, "job", channel, "execute:s:1", 0.001)
        runtime.start_shipping(lambda: None)
        writer = threading.Thread(target=lambda: [runtime.set_progress(i, 50_000, step="s") for i in range(1, 50_001)])
        writer.start()
        writer.join()
        runtime.stop_shipping()
        _, drained = ray.get(channel.send("drain"), timeout=30)
        shipped = [current for _, current in progress_of(drained)]
        assert shipped == sorted(shipped)  # in order (how many shipments ran depends on the machine's load)
        assert progress_of(runtime.take_pending()) == [("s", 50_000)]  # the task's report: the final value
    finally:
        ray.kill(host, no_restart=True)
