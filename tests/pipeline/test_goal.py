"""Fine-tuning to a capability goal on the tiny Llama: the run evaluates every step, saves a
checkpoint at each evaluation, stops at the first that meets the target and records it as the
goal; killed at any point (a real process exit, also between the save and the store write) and
resumed, it stops at the same step and trains no further."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from annotations.records import GoalStatus, Prompt, PromptKind, Run
from annotations.store import Store
from pipeline.capability import CapabilityMetric, evaluate_capability
from pipeline.finetune import LoraSettings, TrainSettings, finetune
from pipeline.goal import CapabilityGoal, GoalCheck, checkpoint_position

ROOT = Path(__file__).resolve().parents[2]
WORDS = "house car book water food money computer day".split()
SETTINGS = TrainSettings(epochs=3, batch_size=4, micro_batch_size=2, learning_rate=5e-2,
                         optimizer="adamw_torch", max_length=64,
                         lora=LoraSettings(r=4, alpha=8, dropout=0.0,
                                           target_modules=("q_proj", "v_proj")))
# the case a killed child process runs too: kept as source so both build the very same run
CASE = '''
from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    id: str
    instruction: str
    context: str
    response: str
    category: str = "open_qa"


PAIRS = [Pair(str(i), f"tell me about the {w}", "", f"the {w} is good . one two three four")
         for i, w in enumerate("house car book water food money computer day".split())]
'''
namespace: dict = {}
exec(CASE, namespace)  # noqa: S102 - the module text above, shared with the child process
PAIRS = namespace["PAIRS"]
HELD_OUT = [Prompt(benchmark="capability-heldout", kind=PromptKind.CAPABILITY, source_id=str(i),
                   text=f"tell me about the {w}", reference=f"the {w} is good . one two three")
            for i, w in enumerate(WORDS[:4])]


def goal_check(target: float, every: int = 1) -> GoalCheck:
    goal = CapabilityGoal(metric="reference_loss", target=target, every=every)
    return GoalCheck(goal, "capability-heldout", len(HELD_OUT),
                     lambda model, tok: evaluate_capability(
                         model, tok, CapabilityMetric.REFERENCE_LOSS, HELD_OUT))


def settings_for(check: GoalCheck) -> TrainSettings:
    return replace(SETTINGS, until=check.goal)


def train(store: Store, model_dir: Path, out: Path, check: GoalCheck):
    settings = settings_for(check)
    run = Run(base_model=str(model_dir), dataset="toy", seed=1,
              hyperparameters=settings.hyperparameters())
    return run, finetune(store, run, PAIRS, settings, out, progress=False, goal=check)


@pytest.fixture(scope="module")
def trajectory(tmp_path_factory, tiny_model_dir):
    """The held-out loss after every step of 3 epochs, from a run whose goal is never met."""
    tmp = tmp_path_factory.mktemp("trajectory")
    store = Store.open(tmp / "s.db")
    run, checkpoints = train(store, tiny_model_dir, tmp / "out", goal_check(target=0.0))
    scores = store.capability_frame().set_index("checkpoint_id")["value"]
    return store, run, checkpoints, [float(scores[c.id]) for c in checkpoints]


def first_meeting(values: list[float], target: float) -> int:
    return next(i for i, v in enumerate(values) if v <= target) + 1  # steps count from 1


def pick_target(values: list[float]) -> float:
    """A target first met at step 3 or later (the loss falls at this learning rate)."""
    for step in range(3, len(values)):
        if min(values[:step - 1]) > values[step - 1]:
            return values[step - 1]
    raise AssertionError(f"the held-out loss never fell to a new low after step 2: {values}")


def test_a_goal_never_met_trains_to_the_epoch_limit_and_says_so(trajectory):
    store, run, checkpoints, values = trajectory
    assert [(c.epoch, c.step, c.examples_seen) for c in checkpoints] == [
        (1, 1, 4), (1, None, 8), (2, 3, 12), (2, None, 16), (3, 5, 20), (3, None, 24)]
    goal = store.goal(run.id)
    assert goal.status == GoalStatus.NOT_REACHED and goal.checkpoint_id == checkpoints[-1].id
    assert goal.step == 6 and goal.value == pytest.approx(values[-1])
    assert values[-1] < values[0]  # training moved the held-out loss


def test_the_in_training_value_is_the_saved_checkpoints_capability(trajectory, tiny_model_dir):
    from pipeline.generate import AdapterSwitcher
    from pipeline.models import load_model

    _, _, checkpoints, values = trajectory
    switcher = AdapterSwitcher(*load_model(str(tiny_model_dir)))
    for checkpoint, value in zip(checkpoints[2:4], values[2:4]):
        with switcher.use(checkpoint) as model:
            again = evaluate_capability(model, switcher.tokenizer,
                                        CapabilityMetric.REFERENCE_LOSS, HELD_OUT)
        assert again == pytest.approx(value, abs=1e-4)


def test_a_bf16_run_measures_its_goal_as_the_saved_checkpoint_measures(tmp_path,
                                                                       tiny_model_dir,
                                                                       monkeypatch):
    """bf16 autocast trains; the goal's value is measured without it (as the capability stage
    measures every checkpoint and the base afterwards), so the two agree."""
    import pipeline.finetune as finetune_module
    from pipeline.generate import AdapterSwitcher
    from pipeline.models import load_model

    # autocast on any CPU (one without AVX512-BF16 or AMX would train in float32 instead:
    # emulated bf16 is slow, but on this tiny model it takes seconds)
    monkeypatch.setattr(finetune_module, "cpu_has_bf16", lambda: True)

    check = goal_check(target=0.0)
    settings = replace(SETTINGS, epochs=1, bf16=True, until=check.goal)
    store = Store.open(tmp_path / "s.db")
    run = Run(base_model=str(tiny_model_dir), dataset="toy", seed=1,
              hyperparameters=settings.hyperparameters())
    checkpoints = finetune(store, run, PAIRS, settings, tmp_path / "out", progress=False,
                           goal=check)
    stored = store.capability_frame().set_index("checkpoint_id")["value"]
    switcher = AdapterSwitcher(*load_model(str(tiny_model_dir)))
    for checkpoint in checkpoints:
        with switcher.use(checkpoint) as model:
            again = evaluate_capability(model, switcher.tokenizer,
                                        CapabilityMetric.REFERENCE_LOSS, HELD_OUT)
        assert stored[checkpoint.id] == pytest.approx(again, abs=1e-4)


def test_the_run_stops_at_the_first_evaluation_that_meets_the_goal(trajectory, tmp_path,
                                                                   tiny_model_dir):
    values = trajectory[3]
    target = pick_target(values)
    expected = first_meeting(values, target)
    store = Store.open(tmp_path / "s.db")
    run, checkpoints = train(store, tiny_model_dir, tmp_path / "out", goal_check(target))
    goal = store.goal(run.id)
    assert goal.status == GoalStatus.REACHED and goal.step == expected
    assert goal.checkpoint_id == checkpoints[-1].id and len(checkpoints) == expected
    assert goal.examples_seen == checkpoints[-1].examples_seen == 4 * expected
    assert goal.value == pytest.approx(values[expected - 1], abs=1e-5)
    saved = sorted(p.name for p in (tmp_path / "out" / f"run-{run.id}").glob("checkpoint-*"))
    assert saved == sorted(f"checkpoint-{s}" for s in range(1, expected + 1))
    # a second call finds the goal settled and trains nothing
    again = finetune(store, run, PAIRS, settings_for(goal_check(target)), tmp_path / "out",
                     progress=False, goal=goal_check(target))
    assert again == checkpoints


def _killed_run(tmp_path: Path, model_dir: Path, target: float, kill_at: int) -> None:
    """Trains the same run in a child process that exits (os._exit, no clean-up) inside the
    Trainer's save at step `kill_at`: the checkpoint is on disk, the store does not know it."""
    script = tmp_path / "child.py"
    script.write_text(CASE + textwrap.dedent(f'''
        import os, sys
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
        from transformers import TrainerCallback
        from annotations.store import Store
        from annotations.records import Run
        from pipeline.finetune import finetune
        import test_goal as case

        class Kill(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                if state.global_step == {kill_at}:
                    os._exit(17)

        check = case.goal_check({target!r})
        settings = case.settings_for(check)
        run = Run(base_model={str(model_dir)!r}, dataset="toy", seed=1,
                  hyperparameters=settings.hyperparameters())
        finetune(Store.open({str(tmp_path / "s.db")!r}), run, PAIRS, settings,
                 {str(tmp_path / "out")!r}, progress=False, goal=check, callbacks=[Kill()])
    '''))
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 17, done.stderr[-2000:]


@pytest.mark.parametrize("kill_before", [False, True], ids=["kill-before-goal", "kill-at-goal"])
def test_a_killed_run_resumes_to_the_same_goal_and_no_further(trajectory, tmp_path,
                                                              tiny_model_dir, kill_before):
    values = trajectory[3]
    target = pick_target(values)
    expected = first_meeting(values, target)
    _killed_run(tmp_path, tiny_model_dir, target, expected - 1 if kill_before else expected)
    store = Store.open(tmp_path / "s.db")
    assert store.goal(next(iter(store.runs_frame()["id"]))) is None  # not settled before dying
    run, checkpoints = train(store, tiny_model_dir, tmp_path / "out", goal_check(target))
    goal = store.goal(run.id)
    assert goal.status == GoalStatus.REACHED and goal.step == expected
    assert [c.examples_seen for c in checkpoints] == [4 * s for s in range(1, expected + 1)]
    assert store.counts()["checkpoints"] == expected  # nothing doubled
    run_dir = tmp_path / "out" / f"run-{run.id}"
    assert not (run_dir / f"checkpoint-{expected + 1}").exists()  # trained no further
    assert goal.value == pytest.approx(values[expected - 1], abs=1e-4)  # the same trajectory
    saved = json.loads((run_dir / f"checkpoint-{expected}" / "run.json").read_text())
    assert saved["capability"] == pytest.approx(goal.value)


def test_checkpoint_positions():
    # 10 examples in micro-batches of 4: 3 micro-batches an epoch (the last one of 2)
    assert checkpoint_position(2, 2 / 3, 10, 3, 4) == (1, 2, 8)
    assert checkpoint_position(3, 1.0, 10, 3, 4) == (1, None, 10)
    assert checkpoint_position(4, 1 + 1 / 3, 10, 3, 4) == (2, 4, 14)


def test_the_goal_reads_the_metrics_direction():
    assert CapabilityGoal("reference_loss", 1.5).reached(1.4)
    assert not CapabilityGoal("reference_loss", 1.5).reached(1.6)
    assert CapabilityGoal("rouge_l", 0.3).reached(0.31)
    assert not CapabilityGoal("rouge_l", 0.3).reached(float("nan"))


def test_runs_without_a_goal_keep_their_ids():
    assert "until" not in SETTINGS.hyperparameters()
    assert settings_for(goal_check(1.0)).hyperparameters()["until"]["target"] == 1.0


def test_a_sweep_trains_to_its_goal_scores_coherence_and_reads_matched(tmp_path, tiny_model_dir):
    """The sweep's `train.until` and `scorers:` sections: every run settles its goal, every
    checkpoint (mid-epoch ones too) is generated, judged and measured, every answer gets a
    coherence score, the matched analysis reads the store; a second run adds nothing."""
    import yaml
    from test_sweep import write_config

    from annotations.matched import matched_report, stored_goals
    from annotations.robustness import conclusion_robustness
    from pipeline.config import load_config
    from pipeline.sweep import run_sweep

    path = write_config(tmp_path, tiny_model_dir, "http://127.0.0.1:9/v1")  # no HTTP judge
    raw = yaml.safe_load(path.read_text())
    raw["train"]["until"] = {"metric": "reference_loss", "target": 0.5, "every": 1}
    raw["judges"] = [{"name": "refusal"}]
    raw["scorers"] = [{"name": "base-loss", "args": {"model": str(tiny_model_dir)}}]
    path.write_text(yaml.safe_dump(raw))
    store = Store.open(tmp_path / "s.db")
    first = run_sweep(store, load_config(path), progress=False)
    goals = store.goals_frame()
    assert len(goals) == 2 and set(goals["status"]) == {GoalStatus.NOT_REACHED.value}
    checkpoints = store.checkpoints_frame()
    tuned = checkpoints[checkpoints["run_id"].notna()]
    assert len(tuned) == 2 * 4 and tuned["step"].notna().sum() == 2 * 2  # 2 steps an epoch
    assert set(store.capability_frame()["checkpoint_id"]) == set(checkpoints["id"])
    generations = store.counts()["generations"]
    assert first.scores_added == generations == len(store.scores_frame())
    assert stored_goals(store) == [("reference_loss", "capability-heldout", 0.5)]
    judge = store.judges_frame()["id"].iloc[0]
    matched = matched_report(store, judge, "reference_loss", 0.5, n_boot=100)
    assert not matched.at_goal["reached"].any() and len(matched.at_goal) == 2 * 2
    robust = conclusion_robustness(store, "toy", n_boot=100)
    assert set(robust.table["alignment"]) <= {"epoch 1", "epoch 2"}  # no run reached a goal
    again = run_sweep(store, load_config(path), progress=False)
    assert (again.generations_added, again.verdicts_added, again.scores_added) == (0, 0, 0)
    assert store.counts()["checkpoints"] == len(checkpoints)


@pytest.mark.parametrize("until, extra, said", [
    ({"metric": "reference_loss", "target": 2.0}, {"capability": None},
     "train.until: needs the `capability:` hold-out"),
    ({"metric": "exact_match", "target": 0.5}, {}, "exact_match is measured on a task set"),
    ({"metric": "contains", "target": 0.5, "tasks": "nope"}, {},
     "train.until.tasks: no task set named 'nope'"),
    ({"metric": "choice_accuracy", "target": 0.5, "tasks": "facts"},
     {"tasks": [{"name": "facts", "shape": "qa", "path": "demo_data/capability_qa.jsonl"}]},
     "choice_accuracy cannot be measured on facts"),
    ({"metric": "reference_loss", "target": "low"}, {},
     "train.until.target: expected a number, got 'low'"),
    ({"metric": "perplexity", "target": 2.0}, {}, "unknown capability metric 'perplexity'"),
    ({"metric": "reference_loss", "target": 2.0, "every": 0}, {}, "train.until.every: must be >= 1"),
])
def test_a_goal_that_cannot_be_measured_is_a_config_error(until, extra, said):
    import yaml

    from pipeline.config import ConfigError, config_from_dict

    raw = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    raw["train"]["until"] = until
    raw.update(extra)
    with pytest.raises(ConfigError, match=None) as err:
        config_from_dict(raw, "sweep.yaml")
    assert said in str(err.value) and "\n" not in str(err.value)


def test_a_goal_on_a_task_set_is_measured_on_it(tmp_path, tiny_model_dir):
    import yaml

    from pipeline.config import config_from_dict
    from pipeline.models import load_model
    from pipeline.sweep import Sweep
    from pipeline.tasks import task_sets

    raw = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    raw["tasks"] = [{"name": "facts", "shape": "qa", "path": "demo_data/capability_qa.jsonl",
                     "n": 4, "max_new_tokens": 4}]
    raw["train"]["until"] = {"metric": "contains", "target": 0.5, "every": 2, "tasks": "facts"}
    config = config_from_dict(raw)
    sweep = Sweep(Store.open(tmp_path / "s.db"), config, progress=False)
    sweep.tasks = task_sets(config.tasks)
    check = sweep._goal_check()
    assert (check.benchmark, check.n, check.goal.every) == ("facts", 4, 2)
    model, tokenizer = load_model(str(tiny_model_dir))
    assert check.measure(model, tokenizer) == evaluate_capability(
        model, tokenizer, CapabilityMetric.CONTAINS, list(sweep.tasks[0].items),
        max_new_tokens=4)
