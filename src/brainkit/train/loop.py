"""The one training loop every job uses: seeded, checkpointed, resumable, logged, DDP-ready.

Batches come from a function of the step number, ``batch_for(step, generator) -> (inputs, targets)``, where
the generator is seeded from (seed, step, rank); so a resumed run draws exactly what an uninterrupted one
would have, and no data-loader state needs saving. Under ``torchrun`` (torch.distributed initialised) the
model is wrapped in DistributedDataParallel, each rank draws its own batches, and rank 0 writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from brainkit.batch import progress_bar
from brainkit.io.write import write_with
from brainkit.runtime import console, native_bf16

BatchFn = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TrainConfig:
    """steps: optimiser steps in all; checkpoint: file resumed from and written every `checkpoint_every`;
    log: JSON-lines file of step, loss, lr, seconds (and validation metrics)."""

    steps: int
    checkpoint: Path
    log: Path
    lr: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    validate_every: int = 0
    max_seconds: float | None = None  # stop (after checkpointing) when this wall time is used
    best_metric: str | None = None  # a validation key to maximise: its best model is kept as best.pt beside the log
    bf16: bool = False  # forward pass under bfloat16 autocast where the device has it natively (`mixed_precision`)
    quiet: bool = False  # no progress bar


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The generator for one step's batch: the same (seed, step, rank) always draws the same batch."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 64 + rank)


def on_device(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """`generator` itself on the CPU; elsewhere a generator of `device` seeded from it (torch draws on a device
    only with that device's generator), so a step's batch is still a function of (seed, step, rank)."""
    if device.type == "cpu":
        return generator
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return torch.Generator(device).manual_seed(seed)


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: object | None, step: int) -> None:
    """Write model, optimiser and scheduler state with the step, atomically."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "scheduler": scheduler.state_dict() if scheduler is not None else {}}
    write_with(path, lambda tmp: torch.save(state, tmp))


def checkpoint_step(path: Path) -> int:
    """The step a checkpoint written by `save_checkpoint` had reached (0 when there is none)."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["step"]) if path.exists() else 0


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: object | None) -> int:
    """Restore a checkpoint written by `save_checkpoint`; return the step it had reached."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"]:
        scheduler.load_state_dict(state["scheduler"])
    return int(state["step"])


def resume(config: TrainConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: object | None,
           announce: bool) -> int:
    """Restore `config.checkpoint` if there is one and return its step (0 for a fresh start); without a scheduler
    the resumed run takes the learning rate it is given now."""
    if not config.checkpoint.exists():
        return 0
    start = load_checkpoint(config.checkpoint, model, optimizer, scheduler)
    if scheduler is None:
        for group in optimizer.param_groups:
            group["lr"] = config.lr
    if announce:
        console.print(f"resuming {config.checkpoint} at step {start}")
    return start


def _best_so_far(config: TrainConfig) -> float:
    path = config.log.with_name("best.pt")
    if not config.best_metric or not path.exists():
        return float("-inf")
    return float(torch.load(path, map_location="cpu", weights_only=True)["metric"])


def optimisation_step(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
                      loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer,
                      scheduler: object | None, device: torch.device, bf16: bool) -> float:
    """One forward/backward pass and update (bfloat16 autocast for the forward pass if asked); return the loss."""
    inputs, targets = batch
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        outputs = model(inputs.to(device))
    loss = loss_fn(outputs.float(), targets.to(device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.item()


def validation_record(model: torch.nn.Module, validate: Callable[[torch.nn.Module], dict[str, float]] | None,
                      config: TrainConfig, step: int) -> dict[str, float]:
    """The validation metrics at this step (empty between validations), the model in eval mode meanwhile."""
    if not (config.validate_every and validate and step % config.validate_every == 0):
        return {}
    model.eval()
    with torch.no_grad():
        record = validate(model)
    model.train()
    return record


def keep_if_best(model: torch.nn.Module, record: dict[str, float], config: TrainConfig, best: float,
                 step: int) -> float:
    """Write best.pt beside the log when `config.best_metric` beats `best`; return the best value now."""
    if not config.best_metric or config.best_metric not in record or record[config.best_metric] <= best:
        return best
    state = {"model": model.state_dict(), "step": step, "metric": record[config.best_metric]}
    write_with(config.log.with_name("best.pt"), lambda tmp: torch.save(state, tmp))
    return record[config.best_metric]


def time_is_up(config: TrainConfig, began: float) -> bool:
    """Whether `config.max_seconds` have passed since `began` (a time.perf_counter() reading)."""
    return config.max_seconds is not None and time.perf_counter() - began > config.max_seconds


def append_log(path: Path, record: dict) -> None:
    """Add one JSON line to the training log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def mixed_precision(asked: bool, device: torch.device, announce: bool = True) -> bool:
    """Whether to train under bfloat16 autocast: only if `asked` and `device` computes bfloat16 natively. Emulated
    bfloat16 is far slower than float32 (a 128^3 segment step on an AVX2-only CPU: over 110 s against 2.9 s), so
    there training runs in float32, with a notice."""
    if asked and not native_bf16(device):
        if announce:
            console.print("--bf16: this device has no native bfloat16 (CPUs need AVX512-BF16 or AMX), where it is "
                          "many times slower; training in float32")
        return False
    return asked


def train(model: torch.nn.Module, batch_for: BatchFn, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
          config: TrainConfig, device: torch.device | str = "cpu",
          validate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
          scheduler_for: Callable[[torch.optim.Optimizer], object] | None = None) -> torch.nn.Module:
    """Train `model` to `config.steps`, resuming from `config.checkpoint` if it exists; return the model."""
    rank, world = rank_and_world()
    device = torch.device(device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed input shapes: let cuDNN pick the fastest 3D kernels
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = scheduler_for(optimizer) if scheduler_for else None
    start = resume(config, model, optimizer, scheduler, announce=rank == 0)
    best = _best_so_far(config)
    bf16 = mixed_precision(config.bf16, device, announce=rank == 0)
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    began, running = time.perf_counter(), []
    step = start
    with progress_bar(config.quiet or rank != 0) as progress:
        bar = progress.add_task("training", total=config.steps, completed=start)
        for step in range(start + 1, config.steps + 1):
            batch = batch_for(step, step_generator(config.seed, step, rank))
            running.append(optimisation_step(wrapped, batch, loss_fn, optimizer, scheduler, device, bf16))
            out_of_time = world == 1 and time_is_up(config, began)  # ranks must not diverge
            if rank == 0:
                record = validation_record(model, validate, config, step)
                best = keep_if_best(model, record, config, best, step)
                if step % config.log_every == 0 or record:
                    record = {"step": step, "loss": sum(running) / len(running),
                              "lr": optimizer.param_groups[0]["lr"],
                              "seconds": round(time.perf_counter() - began, 1), **record}
                    running = []
                    append_log(config.log, record)
                    progress.update(bar, description=f"training (loss {record['loss']:.3f})")
                if step % config.checkpoint_every == 0 or step == config.steps or out_of_time:
                    save_checkpoint(config.checkpoint, model, optimizer, scheduler, step)
            progress.advance(bar)
            if out_of_time:
                break
    if rank == 0 and step < config.steps:
        console.print(f"stopped at step {step} of {config.steps} (time limit); rerun to resume")
    if world > 1:
        dist.barrier()  # no rank leaves (and exits, tearing down gloo's threads) while rank 0 is still writing
    return model
