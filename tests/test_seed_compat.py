"""The seed document's snippets (synapse-sdk's step API), with only the imports changed.

Each section below is the seed's code as written; where the seed elides a body
(``load_data()``, ``upload_files()``) a minimal stand-in is defined next to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from pydantic import BaseModel

# was: from synapse_sdk.plugins.steps import (...)
from synapse_steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    StepRegistry,
    StepResult,
)

# was: from synapse_sdk.plugins.actions.train import BaseTrainAction, TrainContext
from synapse_steps.actions.train import BaseTrainAction, TrainContext

# was: from synapse_sdk.plugins.actions.upload import ... (seed's rollback example uses UploadContext)
from synapse_steps.actions.upload import UploadContext

# was: from synapse_sdk.plugins.context import RuntimeContext
from synapse_steps.context import RuntimeContext

pytestmark = pytest.mark.timeout(30)

# --- stand-ins for what the seed leaves to the reader ------------------------------

LOADED = [3, 1, 4, 1, 5, 9, 2, 6]
PROCESSED: list[int] = []
REMOTE_FILES: set[str] = set()


def load_data() -> list[int]:
    return list(LOADED)


def process(item: int) -> None:
    PROCESSED.append(item)


def upload_files() -> list[str]:
    files = ["a.bin", "b.bin"]
    REMOTE_FILES.update(files)
    return files


def delete_file(file: str) -> None:
    REMOTE_FILES.discard(file)


@pytest.fixture(autouse=True)
def _reset_stand_ins():
    PROCESSED.clear()
    REMOTE_FILES.clear()
    yield


# --- Quick Start (verbatim but for the import) -------------------------------------


# 1. Define context for state sharing
@dataclass
class ProcessContext(BaseStepContext):
    data: list = field(default_factory=list)
    processed: int = 0


# 2. Define steps
class LoadStep(BaseStep[ProcessContext]):
    @property
    def name(self) -> str:
        return 'load'

    @property
    def progress_weight(self) -> float:
        return 0.3

    def execute(self, ctx: ProcessContext) -> StepResult:
        ctx.data = load_data()
        return StepResult(success=True, data={'count': len(ctx.data)})


class ProcessStep(BaseStep[ProcessContext]):
    @property
    def name(self) -> str:
        return 'process'

    @property
    def progress_weight(self) -> float:
        return 0.7

    def execute(self, ctx: ProcessContext) -> StepResult:
        for item in ctx.data:
            process(item)
            ctx.processed += 1
            ctx.set_progress(ctx.processed, len(ctx.data))
        return StepResult(success=True)


def quick_start(runtime_ctx: RuntimeContext, **orchestrator_kwargs):
    # 3. Register and run
    registry = StepRegistry[ProcessContext]()
    registry.register(LoadStep())
    registry.register(ProcessStep())

    context = ProcessContext(runtime_ctx=runtime_ctx)
    orchestrator = Orchestrator(registry, context, **orchestrator_kwargs)
    result = orchestrator.execute()
    return result, context, orchestrator


def test_quick_start_runs_with_no_callback():
    result, context, orchestrator = quick_start(RuntimeContext())
    assert result == {'success': True, 'steps_executed': 2, 'steps_total': 2}
    assert context.data == LOADED
    assert context.processed == len(LOADED)
    assert PROCESSED == LOADED
    assert orchestrator.progress == 1.0


def test_quick_start_results_are_in_step_results():
    _, context, _ = quick_start(RuntimeContext())
    assert [r.success for r in context.step_results] == [True, True]
    assert context.step_results[0].data == {'count': len(LOADED)}


def test_quick_start_step_progress_is_recorded_on_the_runtime_context():
    runtime_ctx = RuntimeContext()
    quick_start(runtime_ctx)
    assert runtime_ctx.progress['process'] == (len(LOADED), len(LOADED))


def test_progress_callback_receives_current_and_total():
    calls: list[tuple[int, int]] = []

    def progress_callback(current, total):
        calls.append((current, total))

    quick_start(RuntimeContext(), progress_callback=progress_callback)
    # load: 0-30%, process: 30-100% in eighths of 70%.
    assert calls[0] == (30, 100)
    assert calls[-1] == (100, 100)
    assert all(total == 100 for _, total in calls)
    percents = [c for c, _ in calls]
    assert percents == sorted(set(percents))
    assert len(calls) == 1 + len(LOADED)


def test_positional_callback_and_hook_arguments():
    calls: list[int] = []
    hooked: list[str] = []
    registry = StepRegistry[ProcessContext]()
    registry.register(LoadStep())
    registry.register(ProcessStep())
    context = ProcessContext(runtime_ctx=RuntimeContext())
    Orchestrator(registry, context, lambda c, t: calls.append(c), lambda name, ctx: hooked.append(name)).execute()
    assert hooked == ['load', 'process']
    assert calls[-1] == 100


# --- Using with Specialized Actions --------------------------------------------------


class TrainParams(BaseModel):
    epochs: int = 2
    dataset: str = 'mnist'


class LoadDatasetStep(BaseStep[TrainContext]):
    name = 'load_dataset'
    progress_weight = 0.2

    def execute(self, ctx: TrainContext) -> StepResult:
        ctx.dataset = [f"{ctx.params['dataset']}-{i}" for i in range(4)]
        return StepResult(data={'size': len(ctx.dataset)})


class TrainStep(BaseStep[TrainContext]):
    name = 'train'
    progress_weight = 0.6

    def execute(self, ctx: TrainContext) -> StepResult:
        for epoch in range(1, ctx.params['epochs'] + 1):
            ctx.set_progress(epoch, ctx.params['epochs'])
        ctx.model = {'weights': len(ctx.dataset)}
        ctx.metrics['accuracy'] = 0.9
        return StepResult()


class UploadModelStep(BaseStep[TrainContext]):
    name = 'upload_model'
    progress_weight = 0.2

    def execute(self, ctx: TrainContext) -> StepResult:
        ctx.model_path = f"models/{ctx.params['dataset']}.bin"
        return StepResult(data={'path': ctx.model_path})


class MyTrainAction(BaseTrainAction[TrainParams]):
    def setup_steps(self, registry: StepRegistry[TrainContext]) -> None:
        registry.register(LoadDatasetStep())
        registry.register(TrainStep())
        registry.register(UploadModelStep())


def test_specialized_train_action_with_setup_steps(monkeypatch):
    monkeypatch.delenv('SYNAPSE_STEPS_EXECUTOR', raising=False)
    action = MyTrainAction({'epochs': 3, 'dataset': 'cifar'})
    assert action.run() == {'success': True, 'steps_executed': 3, 'steps_total': 3}
    assert isinstance(action.context, TrainContext)
    assert action.context.model_path == 'models/cifar.bin'
    assert action.context.model == {'weights': 4}
    assert action.context.metrics == {'accuracy': 0.9}


# --- Automatic Rollback ---------------------------------------------------------------


class UploadStep(BaseStep[UploadContext]):
    name = 'upload'
    progress_weight = 0.5

    def execute(self, ctx: UploadContext) -> StepResult:
        ctx.uploaded_files = upload_files()
        return StepResult(success=True)

    def rollback(self, ctx: UploadContext, result: StepResult) -> None:
        for file in ctx.uploaded_files:
            delete_file(file)


class RegisterStep(BaseStep[UploadContext]):
    name = 'register'
    progress_weight = 0.5

    def execute(self, ctx: UploadContext) -> StepResult:
        raise ConnectionError('catalog unreachable')


def test_rollback_example_deletes_the_uploaded_files():
    registry = StepRegistry[UploadContext]()
    registry.register(UploadStep())
    registry.register(RegisterStep())
    context = UploadContext(runtime_ctx=RuntimeContext())
    try:
        Orchestrator(registry, context).execute()
    except RuntimeError as exc:  # the seed documents that a failed run raises RuntimeError
        message = str(exc)
    else:
        pytest.fail('a failed run must raise')
    assert 'register' in message and 'catalog unreachable' in message
    assert context.uploaded_files == ['a.bin', 'b.bin']
    assert set() == REMOTE_FILES


def test_rollback_example_leaves_files_when_nothing_fails():
    registry = StepRegistry[UploadContext]()
    registry.register(UploadStep())
    context = UploadContext(runtime_ctx=RuntimeContext())
    Orchestrator(registry, context).execute()
    assert {'a.bin', 'b.bin'} == REMOTE_FILES


# --- Conditional Execution -------------------------------------------------------------


@dataclass
class MyContext(BaseStepContext):
    params: dict = field(default_factory=dict)
    validated: bool = False


class OptionalStep(BaseStep[MyContext]):
    name = 'validate'
    progress_weight = 1.0

    def execute(self, ctx: MyContext) -> StepResult:
        ctx.validated = True
        return StepResult()

    def can_skip(self, ctx: MyContext) -> bool:
        return not ctx.params.get('enable_validation', True)


@pytest.mark.parametrize(('params', 'runs'), [({}, True), ({'enable_validation': True}, True),
                                              ({'enable_validation': False}, False)])
def test_conditional_skip(params, runs):
    registry = StepRegistry[MyContext]()
    registry.register(OptionalStep())
    context = MyContext(runtime_ctx=RuntimeContext(), params=params)
    result = Orchestrator(registry, context).execute()
    assert context.validated is runs
    assert result == {'success': True, 'steps_executed': int(runs), 'steps_total': 1}


# --- Automatic Progress Tracking (the seed's 0.2 / 0.6 / 0.2 bands) ---------------------


class Weighted(BaseStep[BaseStepContext]):
    def __init__(self, name: str, weight: float) -> None:
        self._n, self._w = name, weight

    @property
    def name(self) -> str:
        return self._n

    @property
    def progress_weight(self) -> float:
        return self._w

    def execute(self, ctx: BaseStepContext) -> StepResult:
        return StepResult()


def test_progress_bands_from_the_seed():
    registry = StepRegistry[BaseStepContext]()
    for name, weight in (('load', 0.2), ('train', 0.6), ('upload', 0.2)):
        registry.register(Weighted(name, weight))
    assert registry.total_weight == pytest.approx(1.0)
    calls: list[tuple[int, int]] = []
    Orchestrator(registry, BaseStepContext(runtime_ctx=RuntimeContext()), lambda c, t: calls.append((c, t))).execute()
    assert calls == [(20, 100), (80, 100), (100, 100)]


def test_seed_import_paths_resolve():
    import synapse_steps
    from synapse_steps import context, registry, result, step

    assert context.RuntimeContext is synapse_steps.RuntimeContext
    assert step.BaseStep is BaseStep
    assert registry.StepRegistry is StepRegistry
    assert result.StepResult is StepResult
    assert TrainContext is synapse_steps.TrainContext
    assert UploadContext is synapse_steps.UploadContext
