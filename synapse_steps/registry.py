"""The ordered list of a workflow's steps."""

from __future__ import annotations

from typing import Generic, TypeVar

from synapse_steps.context import BaseStepContext
from synapse_steps.errors import StepDefinitionError, UnknownStepError
from synapse_steps.step import BaseStep, is_step, progress_proportion

C = TypeVar("C", bound=BaseStepContext)


class StepRegistry(Generic[C]):
    """Steps in execution order, with unique non-empty names.

    Any object with the step protocol registers (``StepProtocol``: ``name``,
    ``progress_weight``, ``execute``), e.g. synapse-sdk's own steps; subclassing
    ``BaseStep`` is the convenient way, not a requirement.

    Example:
        >>> registry = StepRegistry()
        >>> registry.register(LoadStep())          # doctest: +SKIP
        >>> registry.insert_before("load", InitStep())  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._steps: list[BaseStep[C]] = []

    def register(self, step: BaseStep[C]) -> None:
        """Append a step to the end of the run.

        Raises:
            StepDefinitionError: ``step`` does not meet the step protocol, its name is empty, or the name is taken.
        """
        self._insert(len(self._steps), step)

    def unregister(self, name: str) -> None:
        """Remove the step named ``name``; removing a name that is not registered does nothing."""
        self._steps = [s for s in self._steps if s.name != name]

    def insert_before(self, before_name: str, step: BaseStep[C]) -> None:
        """Insert ``step`` just before the step named ``before_name``.

        Raises:
            UnknownStepError: no step is named ``before_name``.
            StepDefinitionError: as for ``register``.
        """
        self._insert(self._index_of(before_name), step)

    def insert_after(self, after_name: str, step: BaseStep[C]) -> None:
        """Insert ``step`` just after the step named ``after_name``.

        Raises:
            UnknownStepError: no step is named ``after_name``.
            StepDefinitionError: as for ``register``.
        """
        self._insert(self._index_of(after_name) + 1, step)

    def get_steps(self) -> list[BaseStep[C]]:
        """The steps in execution order (a copy: changing it does not change the registry)."""
        return list(self._steps)

    def get_step_names(self) -> list[str]:
        """The step names in execution order."""
        return [s.name for s in self._steps]

    @property
    def total_weight(self) -> float:
        """The sum of the steps' ``progress_weight``: each step's share of overall progress is its weight over this."""
        return sum(s.progress_weight for s in self._steps)

    def get_step_proportions(self) -> dict[str, int]:
        """Step name → ``progress_proportion``, leaving out steps whose proportion is 0."""
        return {s.name: progress_proportion(s) for s in self._steps if progress_proportion(s) > 0}

    def get_step_orders(self) -> dict[str, int]:
        """Step name → its 0-based position in execution order."""
        return {s.name: i for i, s in enumerate(self._steps)}

    def __len__(self) -> int:
        return len(self._steps)

    def __bool__(self) -> bool:
        return bool(self._steps)

    def __contains__(self, name: object) -> bool:
        return any(s.name == name for s in self._steps)

    def _index_of(self, name: str) -> int:
        for i, s in enumerate(self._steps):
            if s.name == name:
                return i
        raise UnknownStepError(f"Step '{name}' not found; registered steps: {self.get_step_names()}")

    def _insert(self, index: int, step: BaseStep[C]) -> None:
        if not is_step(step):
            raise StepDefinitionError(
                f"can only register steps (objects with name, progress_weight and execute), got {type(step).__name__}"
            )
        name = step.name
        if not isinstance(name, str) or not name.strip():
            raise StepDefinitionError(f"step {type(step).__name__} has an empty name; every step needs one")
        if name in self:
            raise StepDefinitionError(f"a step named '{name}' is already registered; step names must be unique")
        self._steps.insert(index, step)
