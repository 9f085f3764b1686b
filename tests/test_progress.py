"""WeightedProgress arithmetic and weight validation, without an orchestrator."""

from __future__ import annotations

import math

import pytest

from synapse_steps import StepDefinitionError
from synapse_steps.progress import WeightedProgress, validate_weights
from tests.steps_kit import KitStep

pytestmark = pytest.mark.timeout(30)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, current: int, total: int) -> None:
        self.calls.append((current, total))

    @property
    def percents(self) -> list[int]:
        return [current for current, _ in self.calls]


# --- validate_weights -------------------------------------------------------------


def test_valid_weights_come_back_as_floats_in_order():
    steps = [KitStep("a", 0.2), KitStep("b", 3), KitStep("c", 0)]
    weights = validate_weights(steps)
    assert weights == [0.2, 3.0, 0.0]
    assert all(type(w) is float for w in weights)


@pytest.mark.parametrize("bad", [-0.1, -5, math.nan, math.inf, -math.inf], ids=["neg", "neg-int", "nan", "inf", "-inf"])
def test_negative_or_non_finite_weight_is_an_error_naming_the_step(bad):
    steps = [KitStep("fine", 1.0), KitStep("culprit", bad), KitStep("after", 1.0)]
    with pytest.raises(StepDefinitionError, match="'culprit'") as info:
        validate_weights(steps)
    assert "'fine'" not in str(info.value)


@pytest.mark.parametrize("bad", ["0.5", None, [1.0]], ids=["str", "none", "list"])
def test_non_number_weight_is_an_error_naming_the_step(bad):
    steps = [KitStep("fine", 1.0), KitStep("culprit", bad)]
    with pytest.raises(StepDefinitionError, match="'culprit'"):
        validate_weights(steps)


def test_zero_total_weight_is_an_error_naming_the_steps():
    steps = [KitStep("load", 0), KitStep("train", 0.0)]
    with pytest.raises(StepDefinitionError, match="load") as info:
        validate_weights(steps)
    assert "train" in str(info.value)


def test_a_zero_weight_on_one_step_is_allowed():
    assert validate_weights([KitStep("a", 0), KitStep("b", 1)]) == [0.0, 1.0]


def test_weight_errors_are_value_errors():
    with pytest.raises(ValueError):
        validate_weights([KitStep("a", -1)])


# --- WeightedProgress -------------------------------------------------------------


def test_starts_at_zero_without_calling_back():
    rec = Recorder()
    progress = WeightedProgress([0.2, 0.6, 0.2], rec)
    assert progress.overall == 0.0
    assert rec.calls == []


def test_finished_steps_fill_their_bands():
    rec = Recorder()
    progress = WeightedProgress([0.2, 0.6, 0.2], rec)
    progress.begin(0)
    progress.finish(0)
    assert progress.overall == pytest.approx(0.2)
    progress.begin(1)
    progress.finish(1)
    assert progress.overall == pytest.approx(0.8)
    progress.begin(2)
    progress.finish(2)
    assert progress.overall == 1.0
    assert rec.calls == [(20, 100), (80, 100), (100, 100)]


def test_update_moves_within_the_running_steps_band():
    progress = WeightedProgress([0.2, 0.6, 0.2])
    progress.begin(0)
    progress.finish(0)
    progress.begin(1)
    progress.update(1, 1, 2)
    assert progress.overall == pytest.approx(0.5)
    progress.update(1, 5, 4)  # past the end of its own count: clamped to the band
    assert progress.overall == pytest.approx(0.8)


def test_update_for_a_step_that_is_not_running_is_ignored():
    progress = WeightedProgress([0.5, 0.5])
    progress.begin(0)
    progress.update(1, 1, 1)
    assert progress.overall == 0.0
    progress.finish(0)
    progress.update(0, 1, 2)  # a late report from a finished step
    assert progress.overall == pytest.approx(0.5)


def test_update_with_zero_total_is_ignored():
    rec = Recorder()
    progress = WeightedProgress([1.0, 1.0], rec)
    progress.begin(0)
    progress.update(0, 3, 0)
    assert progress.overall == 0.0
    assert rec.calls == []


def test_never_goes_backwards():
    rec = Recorder()
    progress = WeightedProgress([1.0, 1.0], rec)
    progress.begin(0)
    progress.update(0, 8, 10)
    assert progress.overall == pytest.approx(0.4)
    progress.update(0, 2, 10)
    assert progress.overall == pytest.approx(0.4)
    progress.finish(0)
    progress.begin(1)
    progress.update(1, 0, 10)
    assert progress.overall == pytest.approx(0.5)
    assert rec.percents == sorted(set(rec.percents)) == [40, 50]


@pytest.mark.parametrize(
    "weights",
    [[0.1, 0.2, 0.3], [0.1] * 10, [1 / 3, 1 / 3, 1 / 3], [0.7, 0.1, 0.1, 0.1], [3, 0, 5]],
    ids=["tenths", "ten-tenths", "thirds", "uneven", "with-zero"],
)
def test_reaches_exactly_one_after_every_step(weights):
    rec = Recorder()
    progress = WeightedProgress(weights, rec)
    for order in range(len(weights)):
        progress.begin(order)
        progress.update(order, 1, 3)
        progress.finish(order)
    assert progress.overall == 1.0
    assert rec.calls[-1] == (100, 100)
    assert rec.percents.count(100) == 1


def test_skipped_steps_count_as_complete():
    """A skipped step is finished without begin/update: its whole band is counted."""
    rec = Recorder()
    progress = WeightedProgress([0.2, 0.6, 0.2], rec)
    progress.finish(0)
    assert progress.overall == pytest.approx(0.2)
    progress.begin(1)
    progress.finish(1)
    progress.finish(2)
    assert progress.overall == 1.0
    assert rec.calls == [(20, 100), (80, 100), (100, 100)]


def test_callback_gets_whole_percents_out_of_100_only_on_change():
    rec = Recorder()
    progress = WeightedProgress([1.0], rec)
    progress.begin(0)
    for i in range(1, 1001):  # 1000 reports, 0.1% apart
        progress.update(0, i, 1000)
    progress.finish(0)
    assert all(type(c) is int and t == 100 for c, t in rec.calls)
    assert rec.percents == list(range(1, 101))


def test_callback_not_called_when_the_percent_does_not_change():
    rec = Recorder()
    progress = WeightedProgress([1.0], rec)
    progress.begin(0)
    progress.update(0, 101, 1000)
    progress.update(0, 102, 1000)
    progress.update(0, 109, 1000)
    assert rec.calls == [(10, 100)]


def test_100_percent_is_reported_only_once_the_last_step_finishes():
    rec = Recorder()
    progress = WeightedProgress([0.5, 0.5], rec)
    progress.begin(0)
    progress.finish(0)
    progress.begin(1)
    progress.update(1, 999, 1000)
    assert rec.calls[-1] == (99, 100)
    progress.finish(1)
    assert rec.calls[-1] == (100, 100)


@pytest.mark.parametrize(
    ("current", "total", "expected"),
    [(1, 4, 35), (2, 4, 50), (3, 4, 65), (1, 5, 32), (4, 5, 68), (7, 10, 62)],
)
def test_percent_inside_the_seed_bands_is_exact(current, total, expected):
    """Seed weights 0.2/0.6/0.2: 3/4 of the 20-80% band is 65%, not 64% from float error."""
    rec = Recorder()
    progress = WeightedProgress([0.2, 0.6, 0.2], rec)
    progress.begin(0)
    progress.finish(0)
    progress.begin(1)
    progress.update(1, current, total)
    assert rec.calls[-1] == (expected, 100)
