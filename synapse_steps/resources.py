"""What a step asks of the machine it runs on; ignored in-process, used by Ray."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

# A rollback that has not finished after this long is stopped and recorded as failed.
DEFAULT_ROLLBACK_TIMEOUT_S = 300.0


class _Unset:
    """Marks a field the caller did not pass, so a declaration equal to a default still counts."""

    def __repr__(self) -> str:
        return "<default>"


_UNSET: Any = _Unset()


def _default(value: Any = None, *, factory: Any = None) -> Any:
    """A field whose real default (``value``, or ``factory()``) is filled in by ``__post_init__``."""
    return field(default=_UNSET, metadata={"default": value, "factory": factory})


@dataclass(frozen=True)
class StepResources:
    """Resources, retries and time limit for one step.

    Defaults suit a step with side effects: one CPU, no GPU, no retries (a retried
    upload uploads twice), no time limit. ``retry_exceptions`` is ``False``, ``True``
    or a tuple of exception classes that may be retried. ``timeout_s`` bounds the
    whole step including queueing, so a step that asks for resources no node has
    fails instead of waiting forever. It does not bound the step's rollback:
    ``rollback_timeout_s`` does (default ``DEFAULT_ROLLBACK_TIMEOUT_S``, counted from the
    rollback's start), and a rollback that raises or crashes is tried again up to
    ``rollback_retries`` times.

    The fields passed explicitly, even at their default value, are what the step
    declares (``declared()``): only those override the config file's ``defaults``.
    """

    num_cpus: float = _default(1.0)
    num_gpus: float = _default(0.0)
    memory: int | None = _default(None)
    resources: dict[str, float] = _default(factory=dict)  # noqa: RUF009 - returns a dataclasses.field
    accelerator_type: str | None = _default(None)
    max_retries: int = _default(0)
    retry_exceptions: bool | tuple[type[BaseException], ...] = _default(False)
    timeout_s: float | None = _default(None)
    rollback_timeout_s: float = _default(DEFAULT_ROLLBACK_TIMEOUT_S)
    rollback_retries: int = _default(0)
    _explicit: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        given: set[str] = set()
        for spec in fields(self):
            if not spec.init:
                continue
            if getattr(self, spec.name) is _UNSET:
                factory = spec.metadata["factory"]
                object.__setattr__(self, spec.name, factory() if factory else spec.metadata["default"])
            else:
                given.add(spec.name)
        object.__setattr__(self, "_explicit", frozenset(given))
        for name in ("num_cpus", "num_gpus"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.memory is not None and self.memory <= 0:
            raise ValueError(f"memory must be a positive number of bytes, got {self.memory!r}")
        for key, amount in self.resources.items():
            if not math.isfinite(amount) or amount < 0:
                raise ValueError(f"resources[{key!r}] must be a finite number >= 0, got {amount!r}")
        if self.max_retries < -1:
            raise ValueError(f"max_retries must be >= 0 (or -1 for unlimited), got {self.max_retries!r}")
        if self.timeout_s is not None and not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {self.timeout_s!r}")
        if not (math.isfinite(self.rollback_timeout_s) and self.rollback_timeout_s > 0):
            raise ValueError(
                f"rollback_timeout_s must be a positive number of seconds, got {self.rollback_timeout_s!r}"
            )
        if self.rollback_retries < 0:
            raise ValueError(f"rollback_retries must be >= 0, got {self.rollback_retries!r}")

    def merged(self, overrides: dict[str, Any]) -> StepResources:
        """A copy with the given fields replaced (None values are ignored); they count as explicit."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        copy = replace(self, **changes)  # replace() passes every field, so set ``_explicit`` here
        object.__setattr__(copy, "_explicit", self._explicit | changes.keys())
        return copy

    def declared(self) -> dict[str, Any]:
        """The fields the caller passed explicitly, with their values."""
        return {name: getattr(self, name) for name in self._explicit}
