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

from brainkit.io.write import write_with
from brainkit.runtime import console

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
    bf16: bool = False  # forward pass under bfloat16 autocast (weights, optimiser and loss stay float32)


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The generator for one step's batch: the same (seed, step, rank) always draws the same batch."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 64 + rank)


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


def _best_so_far(config: TrainConfig) -> float:
    path = config.log.with_name("best.pt")
    if not config.best_metric or not path.exists():
        return float("-inf")
    return float(torch.load(path, map_location="cpu", weights_only=True)["metric"])


def train(model: torch.nn.Module, batch_for: BatchFn, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
          config: TrainConfig, device: torch.device | str = "cpu",
          validate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
          scheduler_for: Callable[[torch.optim.Optimizer], object] | None = None) -> torch.nn.Module:
    """Train `model` to `config.steps`, resuming from `config.checkpoint` if it exists; return the model."""
    rank, world = rank_and_world()
    device = torch.device(device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = scheduler_for(optimizer) if scheduler_for else None
    start = load_checkpoint(config.checkpoint, model, optimizer, scheduler) if config.checkpoint.exists() else 0
    if start and scheduler is None:
        for group in optimizer.param_groups:  # a resumed run takes the learning rate it is given now
            group["lr"] = config.lr
    if start and rank == 0:
        console.print(f"resuming {config.checkpoint} at step {start}")
    best = _best_so_far(config)
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    began, running = time.perf_counter(), []
    step = start
    for step in range(start + 1, config.steps + 1):
        inputs, targets = batch_for(step, step_generator(config.seed, step, rank))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
            outputs = wrapped(inputs.to(device))
        loss = loss_fn(outputs.float(), targets.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        running.append(loss.item())
        out_of_time = (world == 1 and config.max_seconds is not None
                       and time.perf_counter() - began > config.max_seconds)  # ranks must not diverge
        if rank == 0:
            record = {}
            if config.validate_every and validate and step % config.validate_every == 0:
                model.eval()
                with torch.no_grad():
                    record.update(validate(model))
                model.train()
            if config.best_metric and config.best_metric in record and record[config.best_metric] > best:
                best = record[config.best_metric]
                state = {"model": model.state_dict(), "step": step, "metric": best}
                write_with(config.log.with_name("best.pt"), lambda tmp, state=state: torch.save(state, tmp))
            if step % config.log_every == 0 or record:
                record = {"step": step, "loss": sum(running) / len(running), "lr": optimizer.param_groups[0]["lr"],
                          "seconds": round(time.perf_counter() - began, 1), **record}
                running = []
                config.log.parent.mkdir(parents=True, exist_ok=True)
                with open(config.log, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
            if step % config.checkpoint_every == 0 or step == config.steps or out_of_time:
                save_checkpoint(config.checkpoint, model, optimizer, scheduler, step)
        if out_of_time:
            break
    if rank == 0 and step < config.steps:
        console.print(f"stopped at step {step} of {config.steps} (time limit); rerun to resume")
    if world > 1:
        dist.barrier()  # no rank leaves (and exits, tearing down gloo's threads) while rank 0 is still writing
    return model
