"""What a step asks of the machine it runs on: one model for every layer, merged in one place.

Each layer is a ``StepResources`` in which ``None`` means "not set here"; a layer is
validated once, when it is made (in code, or by the config's model when the file is
read). ``resolve`` merges layers, lowest first, over ``BUILT_IN``:

- a step: built-in defaults < config ``defaults`` < what the step declares in
  ``resources`` < config ``steps.NAME`` (``ExecutorConfig.resources_for``);
- a ``ctx.map`` shard: built-in defaults < the call's arguments. A shard does not
  inherit its step's resources: a shard asking for the GPU its own step holds would
  wait for it forever.

Resources are used on Ray and ignored in-process, except the rollback policy
(``rollback_timeout_s``, ``rollback_retries``), which both executors apply.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# A rollback that has not finished after this long is stopped and recorded as failed.
DEFAULT_ROLLBACK_TIMEOUT_S = 300.0


class StepResources(BaseModel):
    """Resources, retries and time limits for a step (or a shard); unset fields are ``None``.

    A step's ``resources`` property returns one; the fields it passes are what it
    declares, and only those override the config file's ``defaults`` (``steps.NAME``
    in the file overrides them in turn). Values not set anywhere come from
    ``BUILT_IN``, which suits a step with side effects: one CPU, no GPU, no retries
    (a retried upload uploads twice), no time limit, rollbacks stopped after
    ``DEFAULT_ROLLBACK_TIMEOUT_S`` and not retried.

    ``retry_exceptions`` is ``True`` (retry any exception) or a tuple of exception
    classes that Ray may retry, up to ``max_retries`` times (crashes are always
    retried; -1 retries forever). ``timeout_s`` bounds the whole step including
    queueing, so a step that asks for resources no node has fails instead of waiting
    forever; it does not bound the rollback: ``rollback_timeout_s`` does, counted
    from the rollback's start, and a rollback that raises or crashes is run up to
    ``rollback_retries`` more times.

    Raises:
        ValueError: a value out of range (negative, zero where a positive number is
            needed, ``inf`` or ``nan``) or an unknown field, in one line naming it.

    Example:
        >>> StepResources(num_gpus=1, timeout_s=3600).declared()
        {'num_gpus': 1.0, 'timeout_s': 3600.0}
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)  # .inf would fail later, in Ray

    num_cpus: float | None = Field(None, ge=0, description="CPUs reserved for the step's task (default 1).")
    num_gpus: float | None = Field(None, ge=0, description="GPUs reserved; the step lands on a GPU node (default 0).")
    memory: int | None = Field(None, gt=0, description="Bytes of memory reserved for the task.")
    resources: dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        None, description="Custom Ray resources, e.g. {'trainer': 1}."
    )
    accelerator_type: str | None = Field(None, description="Ray accelerator type, e.g. 'A100'.")
    max_retries: int | None = Field(None, ge=-1, description="Re-runs after a worker crash (default 0; -1: no limit).")
    retry_exceptions: bool | tuple[type[BaseException], ...] | None = Field(
        None, description="Exceptions retried like crashes: true (any) or exception classes (default: none)."
    )
    timeout_s: float | None = Field(None, gt=0, description="Wall-clock limit for the step, queueing included.")
    rollback_timeout_s: float | None = Field(
        None, gt=0, description="Wall-clock limit for the step's rollback (default 300 s), separate from timeout_s."
    )
    rollback_retries: int | None = Field(
        None, ge=0, description="Re-runs of a rollback that raised, crashed or timed out (default 0)."
    )

    def __init__(self, **values: Any) -> None:
        """Validate the layer; an error is one line naming each bad field (not pydantic's multi-line report)."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ValueError(f"invalid StepResources: {describe_errors(exc)}") from None

    def declared(self) -> dict[str, Any]:
        """The fields this layer sets (not ``None``), with their values: what it overrides."""
        return {name: value for name, value in self if value is not None}

    def over(self, base: StepResources) -> StepResources:
        """``base`` with the fields this layer sets replaced; both are validated already."""
        return base.model_copy(update=self.declared())


# Every field that has a default, at its default: the lowest layer of every merge.
BUILT_IN = StepResources(
    num_cpus=1.0,
    num_gpus=0.0,
    resources={},
    max_retries=0,
    retry_exceptions=False,
    rollback_timeout_s=DEFAULT_ROLLBACK_TIMEOUT_S,
    rollback_retries=0,
)


def resolve(*layers: StepResources | None) -> StepResources:
    """Merge ``layers`` (lowest first; ``None`` skipped) over ``BUILT_IN``.

    The result sets every field that has a default, so ``num_cpus``, ``num_gpus``,
    ``resources``, ``max_retries``, ``retry_exceptions``, ``rollback_timeout_s`` and
    ``rollback_retries`` are never ``None`` on it. Its ``resources`` dict is its own.
    """
    merged = BUILT_IN
    for layer in layers:
        if layer is not None:
            merged = layer.over(merged)
    return merged.model_copy(update={"resources": dict(merged.resources or {})})


def describe_errors(exc: ValidationError) -> str:
    """Pydantic's errors as ``field: message`` pairs on one line, e.g. ``num_gpus: Input should be ...``."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
