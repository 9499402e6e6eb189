"""One training loop for every method.

AdamW over the trainable parameters, linear warm-up then linear decay, gradient clipping, length-grouped
batches with dynamic padding; validation ``evaluations_per_epoch`` times per epoch (evenly spaced, the last at the
epoch's end), the best evaluation's trainable state kept. With ``patience``, a run whose validation score has not
improved for that many evaluations stops there (early stopping; the schedule stays the one of the whole budget, so
the run is the same as without it up to where it stopped) and records where and why in ``TrainOutcome.stopped``.
Only a run that has improved on its first evaluation can stop: one still on its starting plateau (often the
majority class, for a while after warm-up) has not converged, and stopping it there cost full fine-tuning 6.3
points in benchmarks/early_stopping.py (docs/VERDICT.md).
It runs on `accelerate` (CPU, one GPU, or several processes). Methods differ only in which parameters
require gradients: the loop has no per-method branches. Measurement is a few explicit lines.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from peftlab.evaluate import evaluate_split
from peftlab.measure import PeakMemory, optimizer_state_bytes
from peftlab.train.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from peftlab.train.stacked import NotStackable, RunStack
from peftlab.tasks.encode import counted_tokens, train_loader

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number."""


@dataclass
class TrainConfig:
    learning_rate: float
    epochs: int = 3
    max_steps: int | None = None  # when set, overrides epochs
    batch_size: int = 32
    eval_batch_size: int = 64
    weight_decay: float = 0.01  # applied to matrices only, never to biases or norms
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    seed: int = 0
    selection_metric: str = "accuracy"
    evaluations_per_epoch: int = 1
    patience: int | None = None  # evaluations without a better validation score before the run stops; None: never
    evaluate: Callable | None = None  # the task kind's evaluation (peftlab.evaluate.kinds); None: evaluate_split
    trains: bool = True  # False (a method that trains nothing: zero-shot): one validation pass, no step
    after_step: Callable | None = None  # (unwrapped model, step) after every optimizer step: Method.after_step
    head_learning_rate: float | None = None  # the fresh head's own rate (None: learning_rate, like the rest)
    head_modules: tuple[str, ...] = ()  # the head's module names (models.head_module_names), for head_learning_rate


@dataclass
class TrainOutcome:
    steps: int = 0
    train_seconds: float = 0.0
    train_tokens: int = 0  # tokens seen in training: non-padding ones, or the target tokens of token labels
    optimizer_state_bytes: int = 0
    best_epoch: int = 0  # the epoch of the best evaluation
    best_evaluation: int = 0  # its position in `validation`, from 1
    total_steps: int = 0  # the budget in steps; `steps` < `total_steps` when the run stopped early
    stopped: dict | None = None  # early stopping: {reason, step, evaluation, patience, best_evaluation}
    peak_memory_bytes: int = 0  # the caller's peak memory measurement at the last checkpoint (kept across resumes)
    train_loss: list[float] = field(default_factory=list)  # per step
    validation: list[dict] = field(default_factory=list)  # per evaluation: {epoch, step, progress, scores...}

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds else 0.0


def parameter_groups(model, weight_decay: float, head_modules: tuple[str, ...] = (),
                     head_learning_rate: float | None = None) -> list[dict]:
    """Trainable parameters: matrices with weight decay, vectors (biases, norms, scales) without. With
    ``head_learning_rate``, the parameters under a module named in ``head_modules`` (a name component of theirs:
    ``classifier.weight``, peft's ``classifier.modules_to_save.default.weight``) form groups of their own at that
    rate; the scheduler scales every group's rate alike."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    in_head = {name for name, _ in trainable if head_learning_rate and set(name.split(".")) & set(head_modules)}
    groups = []
    for head, extra in ((False, {}), (True, {"lr": head_learning_rate})):
        params = [(name, p) for name, p in trainable if (name in in_head) == head]
        if head and not params:
            continue
        groups += [{"params": [p for _, p in params if p.ndim >= 2], "weight_decay": weight_decay, **extra},
                   {"params": [p for _, p in params if p.ndim < 2], "weight_decay": 0.0, **extra}]
    return groups


def adamw(groups: list[dict], learning_rate: float) -> torch.optim.AdamW:
    """AdamW with torch's fused kernel where the parameters allow it (floating point, on CPU or an accelerator):
    the same update, in one kernel instead of a loop over tensors; on 2 CPU cores it takes a full fine-tuning step
    of MiniLM-L6's 22.4 M parameters from 83 to 15 ms (benchmarks/optimizer_step.py). Elsewhere (a device without
    the kernel) the per-tensor loop, as before."""
    try:
        return torch.optim.AdamW(groups, lr=learning_rate, fused=True)
    except (RuntimeError, ValueError):  # torch refuses fused for these parameters
        return torch.optim.AdamW(groups, lr=learning_rate)


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def evaluation_points(steps_per_epoch: int, per_epoch: int) -> set[int]:
    """The batches of an epoch (counted from 1) after which the loop evaluates: ``per_epoch`` evenly spaced, the
    last at the epoch's end."""
    return {math.ceil(k * steps_per_epoch / per_epoch) for k in range(1, per_epoch + 1)}


def evaluation_steps(steps_per_epoch: int, total_steps: int, per_epoch: int) -> set[int]:
    """The steps after which a run from its start evaluates: :func:`evaluation_points` in every epoch, and the
    run's last step."""
    epochs = math.ceil(total_steps / steps_per_epoch)
    points = {min(total_steps, (epoch - 1) * steps_per_epoch + point)
              for epoch in range(1, epochs + 1) for point in evaluation_points(steps_per_epoch, per_epoch)}
    return points | {total_steps}


def evaluations_since_best(outcome: TrainOutcome) -> int:
    return len(outcome.validation) - outcome.best_evaluation


def train(model, encoded, tokenizer, config: TrainConfig | list[TrainConfig], accelerator: Accelerator,
          num_labels: int, checkpoint: Path | None | list[Path | None] = None,
          on_evaluation: Callable[[int, dict], None] | None = None,
          on_step: Callable[[int, int, int, int], None] | None = None,
          memory: PeakMemory | None = None, pause_after: int | None = None) -> TrainOutcome | list[TrainOutcome]:
    """Train `model` in place on encoded["train"], selecting on encoded["validation"]; returns the record.

    With ``checkpoint``, the state is saved there after every epoch and a run that finds one continues from it.
    ``on_evaluation(evaluation, row)`` is called after every evaluation (numbered from 1; ``row``: its entry of
    ``validation``, the scores with epoch, step and progress; tuning reports and prunes through it),
    ``on_step(steps, total_steps, epoch, epochs)`` after every step (the study's progress display). ``memory``, the caller's peak memory measurement, is saved with every checkpoint, so that a
    run continued from one (a learning-rate trial's, say) still reports the peak of the training it continues.

    ``model`` may be a :class:`~peftlab.train.stacked.RunStack` of K runs trained together on one base (shared-base
    training); then ``config`` and ``checkpoint`` are lists, one per run (the same budget, each its own seed, i.e.
    data order, and learning rate), and the result is a list of K records. Each run has its own optimizer, schedule,
    clipping, validation, best state and early stopping; the runs' losses are summed for one backward (their
    parameters are disjoint, so each gets its own gradient).

    ``pause_after`` (a single run with a checkpoint; the learning-rate race): stop after that many validation passes
    in all, the checkpoint saved there, even mid-epoch; calling again with a later pause point (or none) continues
    exactly where it paused: a checkpoint saved mid-epoch keeps the epoch's data order, and the run skips the batches
    it had trained, so paused and continued training is the same run as one without a pause."""
    stack = model if isinstance(model, RunStack) else RunStack([model])
    configs = config if isinstance(config, list) else [config]
    checkpoints = checkpoint if isinstance(checkpoint, list) else [checkpoint] * (len(configs) if checkpoint is None
                                                                                   else 1)
    if not len(configs) == len(checkpoints) == len(stack):
        raise ValueError(f"{len(stack)} runs need as many configs and checkpoints, got {len(configs)} and "
                         f"{len(checkpoints)}")
    first = configs[0]
    if not first.trains:
        return evaluate_as_is(model, encoded, tokenizer, first, accelerator, num_labels, on_evaluation)
    torch.manual_seed(first.seed)
    runs = [_Run(run_model, run_config, run_checkpoint, encoded["train"], tokenizer)
            for run_model, run_config, run_checkpoint in zip(stack.models, configs, checkpoints)]
    steps_per_epoch = len(runs[0].loader)
    total_steps = first.max_steps or first.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    evaluate_after = evaluation_points(steps_per_epoch, first.evaluations_per_epoch)
    for run in runs:
        run.optimizer = adamw(parameter_groups(run.model, run.config.weight_decay, run.config.head_modules,
                                               run.config.head_learning_rate), run.config.learning_rate)
        run.scheduler = get_linear_schedule_with_warmup(run.optimizer, int(run.config.warmup_ratio * total_steps),
                                                        total_steps)
        run.outcome = TrainOutcome(total_steps=total_steps)
    prepared = accelerator.prepare(runs[0].model, *(getattr(run, part) for part in ("optimizer", "loader", "scheduler")
                                                     for run in runs))
    runs[0].model = prepared[0]
    for index, run in enumerate(runs):
        run.optimizer, run.loader, run.scheduler = prepared[1 + index::len(runs)]
        run.trainable = [p for p in run.model.parameters() if p.requires_grad]
        run.resume(total_steps, epochs)
    first_epoch, skip = runs[0].first_epoch, runs[0].skip
    if any((run.first_epoch, run.skip) != (first_epoch, skip) for run in runs):
        raise NotStackable("the runs' checkpoints are at different steps; train them one after another")
    steps = runs[0].outcome.steps
    if first_epoch <= epochs:  # resumed: the epochs left from where the checkpoint is (mid-epoch, or a budget that
        # --until-conclusive extended)
        epochs = first_epoch - 1 + math.ceil(max(0, total_steps - steps + skip) / steps_per_epoch) \
            if total_steps > steps else first_epoch - 1
    paused = False
    resumed_rng = torch.get_rng_state() if skip else None  # the checkpoint's; starting an epoch's iterator draws
    progress = tqdm(total=total_steps, initial=steps, desc="train", leave=False, mininterval=1.0, disable=None if accelerator.is_main_process and on_step is None else True)
    for epoch in range(first_epoch, epochs + 1):
        active = [run for run in runs if not run.outcome.stopped]
        for run in runs:
            run.model.train()
        for run in runs:  # the data order's state as the epoch starts: what a mid-epoch checkpoint keeps
            run.epoch_start = run.generator.get_state()
        start = time.perf_counter()
        for in_epoch, batches in enumerate(zip(*(run.loader for run in runs)), 1):
            if epoch == first_epoch and in_epoch <= skip:  # trained before the checkpoint it continues from
                continue
            if resumed_rng is not None:  # dropout continues from where the checkpoint was, not from the iterator's draw
                torch.set_rng_state(resumed_rng)
                resumed_rng = None
            losses = stack.losses(runs[0].model, batches)
            for run, loss in zip(runs, losses):
                if not run.outcome.stopped and not torch.isfinite(loss):
                    raise TrainingDiverged(f"loss became {loss.item()} at step {run.outcome.steps + 1}")
            accelerator.backward(sum(loss for run, loss in zip(runs, losses) if not run.outcome.stopped))
            for run, loss, batch in zip(runs, losses, batches):
                if not run.outcome.stopped:
                    run.step(accelerator, loss, batch)
                else:
                    run.optimizer.zero_grad(set_to_none=True)
            steps += 1
            progress.update(1)
            if on_step is not None:
                on_step(steps, total_steps, epoch, epochs)
            if in_epoch in evaluate_after or steps >= total_steps:
                epoch_end = in_epoch == steps_per_epoch or steps >= total_steps  # checkpointed there
                seconds = _synchronized_seconds(accelerator, start)
                for run in active:
                    run.outcome.train_seconds += seconds
                    paused = pause_after is not None and len(run.outcome.validation) + 1 >= pause_after
                    run.evaluate(encoded["validation"], tokenizer, accelerator, num_labels, epoch, steps_per_epoch,
                                 total_steps, in_epoch, memory, on_evaluation, save=epoch_end or paused)
                start = time.perf_counter()
                if paused:
                    break
                active = [run for run in runs if not run.outcome.stopped]
                for run in runs:
                    run.model.train()
                start = time.perf_counter()  # validation is not training time
            if steps >= total_steps or not active:
                break
        seconds = _synchronized_seconds(accelerator, start)
        for run in active:
            run.outcome.train_seconds += seconds
        if not active or paused:
            break
    progress.close()

    for run in runs:
        run.outcome.optimizer_state_bytes = optimizer_state_bytes(run.optimizer)
        restore_trainable_state(run.model, run.best_state)
    return [run.outcome for run in runs] if isinstance(model, RunStack) else runs[0].outcome


class _Run:
    """One run's state in the loop: its model, config, data order, optimizer, schedule, record and best state."""

    def __init__(self, model, config: TrainConfig, checkpoint: Path | None, dataset, tokenizer):
        self.model, self.config, self.checkpoint = model, config, checkpoint
        self.loader = train_loader(dataset, tokenizer, config.batch_size, config.seed)
        self.generator = self.loader.sampler.generator  # the data order of every epoch; saved with the checkpoint
        self.optimizer = self.scheduler = self.outcome = None
        self.trainable: list[torch.nn.Parameter] = []
        self.best_score, self.best_state, self.first_epoch = -math.inf, None, 1
        self.skip = 0  # batches of the first epoch trained before the checkpoint this run continues from
        self.epoch_start = self.generator.get_state()

    def resume(self, total_steps: int, epochs: int) -> None:
        saved = load_checkpoint(self.checkpoint)
        if saved is not None and resume(saved, self.model, self.optimizer, self.scheduler, self.generator,
                                        self.checkpoint):
            self.outcome = TrainOutcome(**saved["outcome"])
            self.outcome.total_steps = total_steps  # --until-conclusive continues a run to a longer budget
            self.best_score, self.best_state = saved["best_score"], saved["best_state"]
            in_epoch = saved.get("in_epoch", 0)  # saved mid-epoch: that epoch again, from its start's data order
            self.first_epoch = (epochs + 1 if self.outcome.stopped else  # stopped: nothing left
                                saved["epoch"] if in_epoch else saved["epoch"] + 1)
            self.skip = in_epoch if not self.outcome.stopped else 0

    def step(self, accelerator: Accelerator, loss: torch.Tensor, batch: dict) -> None:
        accelerator.clip_grad_norm_(self.trainable, self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        if self.config.after_step is not None:  # before the gradients go: AdaLoRA reads them
            self.config.after_step(accelerator.unwrap_model(self.model), self.outcome.steps + 1)
        self.optimizer.zero_grad(set_to_none=True)
        self.outcome.train_loss.append(loss.item())
        self.outcome.train_tokens += counted_tokens(batch)
        self.outcome.steps += 1

    def evaluate(self, validation, tokenizer, accelerator: Accelerator, num_labels: int, epoch: int,
                 steps_per_epoch: int, total_steps: int, in_epoch: int, memory: PeakMemory | None,
                 on_evaluation: Callable[[int, dict], None] | None, save: bool) -> None:
        """Validate; keep the best state; decide early stopping; when ``save`` (the epoch's or the budget's end, a
        pause) or at a stop, save the checkpoint (mid-epoch: with the epoch's starting data order and the batches
        trained in it)."""
        config, outcome = self.config, self.outcome
        scores = (config.evaluate or evaluate_split)(self.model, validation, tokenizer, config.eval_batch_size,
                                                     accelerator.device, num_labels, "validate")
        scores = {key: value for key, value in scores.items() if isinstance(value, (int, float))}  # no hits
        outcome.validation.append({"epoch": epoch, "step": outcome.steps,
                                   "progress": round(outcome.steps / steps_per_epoch, 4), **scores})
        if scores[config.selection_metric] > self.best_score:
            self.best_score, self.best_state = scores[config.selection_metric], trainable_state(self.model)
            outcome.best_epoch, outcome.best_evaluation = epoch, len(outcome.validation)
        if (config.patience and outcome.steps < total_steps and outcome.best_evaluation > 1
                and evaluations_since_best(outcome) >= config.patience):
            outcome.stopped = {"reason": "early_stopping", "step": outcome.steps,
                               "evaluation": len(outcome.validation), "patience": config.patience,
                               "best_evaluation": outcome.best_evaluation}
        if save or outcome.stopped:
            if memory is not None:
                outcome.peak_memory_bytes = max(outcome.peak_memory_bytes, memory.so_far())
            if self.checkpoint is not None and accelerator.is_main_process:  # a stopped run resumes as finished
                mid_epoch = in_epoch if in_epoch < steps_per_epoch and not outcome.stopped else 0
                save_checkpoint(self.checkpoint, epoch, trainable_state(self.model), self.optimizer, self.scheduler,
                                self.generator, outcome, self.best_score, self.best_state,
                                in_epoch=mid_epoch, epoch_start=self.epoch_start if mid_epoch else None)
            accelerator.wait_for_everyone()
        if on_evaluation is not None:  # after the checkpoint: a trial pruned here has its epoch saved
            on_evaluation(len(outcome.validation), outcome.validation[-1])


def evaluate_as_is(model, encoded, tokenizer, config: TrainConfig, accelerator: Accelerator, num_labels: int,
                   on_evaluation: Callable[[int, dict], None] | None = None) -> TrainOutcome:
    """The outcome of a run that trains nothing: no step, one validation pass of the model as it is (epoch 0)."""
    scores = (config.evaluate or evaluate_split)(model, encoded["validation"], tokenizer, config.eval_batch_size,
                                                 accelerator.device, num_labels, "validate")
    row = {"epoch": 0, "step": 0, "progress": 0.0,
           **{key: value for key, value in scores.items() if isinstance(value, (int, float))}}
    if on_evaluation is not None:
        on_evaluation(1, row)
    return TrainOutcome(best_epoch=0, best_evaluation=1, validation=[row])


def _synchronized_seconds(accelerator: Accelerator, start: float) -> float:
    """Seconds since ``start`` once every process (and the GPU) has finished the steps."""
    accelerator.wait_for_everyone()
    if accelerator.device.type == "cuda":
        torch.cuda.synchronize(accelerator.device)
    return time.perf_counter() - start


def resume(saved: dict, model, optimizer, scheduler, generator: torch.Generator, checkpoint: Path) -> bool:
    """Put a checkpoint's state into the model, optimizer, scheduler and RNGs; False (logged) when it does not fit
    this run, with everything as it was before, so that the run trains from its start."""
    before = (trainable_state(model), copy.deepcopy(optimizer.state_dict()), copy.deepcopy(scheduler.state_dict()),
              rng_states(generator))
    try:
        shapes = {name: tuple(tensor.shape) for name, tensor in before[0].items()}
        for key in ("trainable", "best_state"):  # best_state is None when no validation score was a number
            if saved[key] is not None and {name: tuple(tensor.shape) for name, tensor in saved[key].items()} != shapes:
                raise ValueError(f"its {key} does not hold this run's trainable parameters")
        if set(saved["outcome"]) - {item.name for item in fields(TrainOutcome)}:
            raise ValueError("its record has fields this peftlab does not know")
        restore_trainable_state(model, saved["trainable"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        restore_rng_states(saved["rng"], generator)
        return True
    except Exception as error:  # noqa: BLE001 - a checkpoint that does not fit: start over, as without one
        restore_trainable_state(model, before[0])
        optimizer.load_state_dict(before[1])
        scheduler.load_state_dict(before[2])
        restore_rng_states(before[3], generator)
        log.warning("ignoring the epoch checkpoint %s, which does not fit this run (%s: %s); this run trains from "
                    "its start", checkpoint, type(error).__name__, str(error).splitlines()[0][:200] if str(error) else "")
        return False


@torch.no_grad()
def restore_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    for name, parameter in model.named_parameters():
        if name in state:
            parameter.copy_(state[name])
