"""Fine-tuning to a capability goal: evaluate capability every few optimizer steps, keep a
checkpoint at each evaluation, stop at the first one that meets the target.

"After N epochs" is an arbitrary place to measure safety: two set-ups should be compared where
they reach the same capability on the user's task. With

    train:
      epochs: 3                  # the limit: a run that never meets the goal stops here
      until: {metric: reference_loss, target: 1.9, every: 4}

a run measures `metric` on the capability hold-out (or on the task set named by `tasks`) every
`every` optimizer steps and at each epoch's end, in the training process on the model being
trained (eval mode, no gradients), saves a checkpoint there, and stops at the first evaluation
that meets the target. The value is written into the Trainer's log history, so it is saved with
the checkpoint and a run killed anywhere is recovered from disk; the run's goal (reached or not,
the checkpoint, the optimizer step and the examples seen there) is stored with it
(`records.RunGoal`), and a resumed run that already met its goal trains no further.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback

from annotations.records import CapabilityMetric

log = logging.getLogger(__name__)

LOG_PREFIX = "capability/"  # the Trainer log-history key of an evaluation: capability/<metric>


@dataclass(frozen=True)
class CapabilityGoal:
    """Train until `metric` meets `target` (at most or at least, as the metric improves),
    evaluating every `every` optimizer steps and at each epoch's end."""

    metric: str
    target: float
    every: int = 10
    tasks: str | None = None  # the task set the metric is measured on; None: the hold-out

    def reached(self, value: float | None) -> bool:
        return CapabilityMetric(self.metric).meets(value, self.target)


@dataclass(frozen=True)
class GoalCheck:
    """What a run needs to measure its goal in-process: the goal, the benchmark name its
    scores are stored under, how many items it measures, and `measure(model, tokenizer)`."""

    goal: CapabilityGoal
    benchmark: str
    n: int
    measure: Callable[[Any, Any], float]


def evaluation_value(log_history: Sequence[dict], metric: str, step: int) -> float | None:
    """The capability measured at optimizer `step`, as the Trainer's log history kept it."""
    key = LOG_PREFIX + metric
    for entry in log_history:
        if entry.get("step") == step and key in entry:
            return float(entry[key])
    return None


def checkpoint_position(global_step: int, epoch: float, n_examples: int,
                        micro_batches_per_epoch: int, micro_batch_size: int
                        ) -> tuple[int, int | None, int]:
    """(epoch, step, examples seen) of a checkpoint saved at `global_step` with the Trainer's
    fractional `epoch`: at an epoch's end step is None and epoch the epochs done; mid-epoch,
    step is the optimizer step and epoch the one in progress (1-based)."""
    done = math.floor(epoch + 1e-9)
    micro = round((epoch - done) * micro_batches_per_epoch)
    if micro == 0:  # an epoch's end
        return done, None, done * n_examples
    seen = done * n_examples + min(micro * micro_batch_size, n_examples)
    return done + 1, global_step, seen


@contextlib.contextmanager
def full_precision(model: Any) -> Iterator[None]:
    """The model without the autocast wrapper accelerate puts around a mixed-precision (bf16)
    model's forward, for the length of the block: capability measured during training must be
    what the saved checkpoint measures afterwards (the capability stage and the base model are
    measured without autocast)."""
    wrapped, original = model.__dict__.get("forward"), getattr(model, "_original_forward", None)
    if wrapped is None or original is None:
        yield
        return
    model.forward = original
    try:
        yield
    finally:
        model.forward = wrapped


class GoalCallback(TrainerCallback):
    """Evaluates the goal's metric every `every` optimizer steps and at each epoch's end, logs
    the value into the Trainer's state (saved with the checkpoint), asks the Trainer to save
    there, and to stop once the target is met."""

    def __init__(self, check: GoalCheck):
        self.check = check
        self.last_step = -1

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step % self.check.goal.every == 0:
            self._evaluate(state, control, model, processing_class)
        return control

    def on_epoch_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.last_step != state.global_step:
            self._evaluate(state, control, model, processing_class)
        return control

    def _evaluate(self, state, control, model, tokenizer) -> None:
        goal = self.check.goal
        with full_precision(model):
            value = float(self.check.measure(model, tokenizer))
        self.last_step = state.global_step
        state.log_history.append({"step": state.global_step, "epoch": state.epoch,
                                  LOG_PREFIX + goal.metric: value})
        control.should_save = True
        if goal.reached(value):
            log.info("capability goal met at step %d: %s %.4g (target %g)", state.global_step,
                     goal.metric, value, goal.target)
            control.should_training_stop = True
