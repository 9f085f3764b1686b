"""``runtime_ctx.logger``: synapse-sdk's logger interface over a run's runtime context.

Step code written for synapse-sdk calls ``runtime_ctx.logger.info(...)``,
``.log(level, event, data)``, ``.set_progress(...)``, ``.get_step()``. Here each
call becomes a ``RuntimeEvent`` of the runtime context, attributed to the running
step (the orchestrator announces it with ``set_step``), so it reaches subscribers,
the CLI and — from a Ray worker — the driver, like every other event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from synapse_steps.messages import level_name

if TYPE_CHECKING:
    from synapse_steps.runtime import RuntimeContext


class RunLogger:
    """The SDK's ``BaseLogger`` methods, recording into ``runtime``."""

    def __init__(self, runtime: RuntimeContext) -> None:
        self._runtime = runtime
        self._step: str | None = None
        self._order: int | None = None

    def set_step(self, step: str | None, order: int | None = None) -> None:
        """Called by the orchestrator around each step; events default to this step."""
        self._step = step
        self._order = order if step is not None else None

    def get_step(self) -> str | None:
        """The step this logger's messages are attributed to, or None outside a step."""
        return self._step

    def get_step_order(self) -> int | None:
        """The 0-based position of that step in the run, or None outside a step."""
        return self._order

    def log(
        self, level: Any, event: str, data: Mapping[str, Any], file: str | None = None, step: str | None = None
    ) -> None:
        """The SDK's ``logger.log(level, event, data, file, step)``; ``event="message"`` is a user message."""
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        where = step if step is not None else self._step
        if event == "message":
            self._runtime.emit_message(str(data.get("content", data.get("message", ""))), level_name(level), where,
                                       data.get("key"))
        else:
            self._runtime.log(event, dict(data), file, level=level_name(level), step=where)

    def info(self, message: str) -> None:
        """Send an info message for the current step to the run's reporters."""
        self._runtime.emit_message(str(message), "info", self._step)

    def warning(self, message: str) -> None:
        """Send a warning for the current step to the run's reporters."""
        self._runtime.emit_message(str(message), "warning", self._step)

    def error(self, message: str) -> None:
        """Send an error message for the current step; it does not fail the step (raise for that)."""
        self._runtime.emit_message(str(message), "error", self._step)

    def critical(self, message: str) -> None:
        """Send a critical message for the current step; it does not fail the step (raise for that)."""
        self._runtime.emit_message(str(message), "critical", self._step)

    def debug(self, message: str) -> None:
        """Like the SDK: a ``debug`` event, not a user-facing message."""
        self._runtime.log("debug", {"content": str(message)}, level="debug", step=self._step)

    def set_progress(self, current: float, total: float, step: str | None = None) -> None:
        """Progress of ``step`` (default: the running step), as the SDK's logger."""
        self._runtime.set_progress(current, total, step if step is not None else self._step)

    def set_metrics(self, value: Mapping[str, Any], step: str | None = None) -> None:
        """Replace the metrics of ``step`` (default: the current step).

        Raises:
            ValueError: no step was given and none is running.
        """
        where = step if step is not None else self._step
        if not where:
            raise ValueError("step must be specified or set via set_step()")
        self._runtime.set_metrics(dict(value), where)

    def log_metric(self, category: str, key: str, value: float, **metrics: Any) -> None:
        """Record one metric value under ``category``/``key``, with extra fields kept beside it."""
        self._runtime.log_metric(category, key, value, **metrics)

    def get_metrics(self, step: str | None = None) -> dict[str, Any]:
        """The metrics of ``step``, or of every step keyed by name; copies, safe to mutate."""
        if step:
            return dict(self._runtime.metrics.get(step, {}))
        return {str(k): dict(v) for k, v in self._runtime.metrics.items()}

    @staticmethod
    def _build_message_data(content: str, key: str | None = None) -> dict[str, Any]:
        """The SDK's message payload shape (``content`` and optional ``key``)."""
        data: dict[str, Any] = {"content": content}
        if key is not None:
            data["key"] = key
        return data
