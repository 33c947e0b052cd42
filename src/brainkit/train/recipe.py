"""What every job's `brainkit train JOB` shares: the common options, and train-then-save-weights."""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable
from pathlib import Path

import torch

from brainkit.runtime import console, resolve_device
from brainkit.train.loop import BatchFn, TrainConfig, rank_and_world, train
from brainkit.weights import load_weights, save_weights


def add_train_options(parser: argparse.ArgumentParser, job: str, steps: int, lr: float) -> None:
    """--data, -o/--output, --steps, --lr, --max-minutes, --init, --schedule, --bf16 for `brainkit train <job>`."""
    parser.add_argument("--data", default="../shared/data", help="the shared data folder")
    parser.add_argument("-o", "--output", default=f"runs/{job}", help="checkpoint, log and final weights")
    parser.add_argument("--steps", type=int, default=steps, help="optimiser steps in all (resumes where it stopped)")
    parser.add_argument("--lr", type=float, default=lr, help="Adam learning rate")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (checkpointed, resumable) after this")
    parser.add_argument("--init", help="start from these weights (e.g. the bundled ones) when there is no checkpoint")
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                        help="learning rate: constant, or cosine decay from --lr to zero at --steps (fine-tuning)")
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 mixed precision (1.2-1.5x faster 3D steps on CPUs with AVX512-BF16, and GPUs; "
                             "float32 on devices without native bfloat16)")


def distributed_device(name: str) -> torch.device:
    """The device for this process; under `torchrun` (WORLD_SIZE > 1) also join the process group (NCCL on GPUs,
    gloo on CPUs), each rank on its own GPU."""
    import torch.distributed as dist

    device = resolve_device(name)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    return device


def train_and_save(job: str, model: torch.nn.Module, batch_for: BatchFn,
                   loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], args: argparse.Namespace,
                   validate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
                   every: tuple[int, int, int] = (50, 10, 100), best_metric: str | None = None,
                   scheduler_for: Callable[[torch.optim.Optimizer], object] | None = None) -> Path:
    """Train through the shared loop from the parsed options and write `<output>/<job>.pt` (fp16), and
    `<output>/best.pt` (the model with the best `best_metric` on validation) when one is named.

    `every`: checkpoint, log and validation intervals in steps; `scheduler_for` builds a learning-rate scheduler.
    """
    if args.schedule == "cosine":
        if scheduler_for is not None:
            raise SystemExit(f"brainkit train {job}: this job has its own learning-rate schedule; leave out --schedule")
        scheduler_for = functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=args.steps)
    out = Path(args.output)
    if args.init and not (out / "checkpoint.pt").exists():
        load_weights(model, Path(args.init), job).train()
    checkpoint_every, log_every, validate_every = every
    config = TrainConfig(steps=args.steps, checkpoint=out / "checkpoint.pt", log=out / "log.jsonl", lr=args.lr,
                         seed=args.seed, checkpoint_every=checkpoint_every, log_every=log_every,
                         validate_every=validate_every, best_metric=best_metric, bf16=args.bf16, quiet=args.quiet,
                         max_seconds=args.max_minutes * 60 if args.max_minutes else None)
    model = train(model, batch_for, loss_fn, config, distributed_device(args.device), validate=validate,
                  scheduler_for=scheduler_for)
    weights = out / f"{job}.pt"
    if rank_and_world()[0] == 0:
        save_weights(model, weights)
        console.print(f"wrote {weights}")
    close_process_group()
    return weights


def close_process_group() -> None:
    """Leave the process group, if any, together with the other ranks: a process that exits with it open can
    abort in gloo's threads."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
