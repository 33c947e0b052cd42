"""The shared training loop: learns, resumes exactly, and runs under DistributedDataParallel (gloo, CPU)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from brainkit.train import TrainConfig, loop, on_device, step_generator, train
from brainkit.train.recipe import close_process_group


def toy_batches(step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn((16, 4), generator=generator)
    return x, (x[:, 0] - 2 * x[:, 1] > 0).float()


def toy_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Flatten(0))


def bce(logits, targets):
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)


def config(tmp: Path, steps: int, **extra) -> TrainConfig:
    return TrainConfig(steps=steps, checkpoint=tmp / "ckpt.pt", log=tmp / "log.jsonl", lr=0.05,
                       checkpoint_every=1, log_every=5, **extra)


def test_loop_learns_and_logs(tmp_path):
    model = train(toy_model(), toy_batches, bce, config(tmp_path, 100))
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 100
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]
    x, y = toy_batches(0, torch.Generator().manual_seed(123))
    assert ((model(x) > 0).float() == y).float().mean() > 0.9


def test_bf16_mixed_precision_learns_and_keeps_float32_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "native_bf16", lambda device: True)  # autocast even where bfloat16 is emulated
    model = train(toy_model(), toy_batches, bce, config(tmp_path, 100, bf16=True))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    x, y = toy_batches(0, torch.Generator().manual_seed(123))
    assert ((model(x) > 0).float() == y).float().mean() > 0.9


@pytest.mark.parametrize("native", [False, True])
def test_bf16_autocast_only_where_the_device_has_native_bfloat16(tmp_path, monkeypatch, native):
    monkeypatch.setattr(loop, "native_bf16", lambda device: native)
    dtypes = []
    model = toy_model()
    model[0].register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    train(model, toy_batches, bce, config(tmp_path, 2, bf16=True))
    assert dtypes == [torch.bfloat16 if native else torch.float32] * 2


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    straight = train(toy_model(), toy_batches, bce, config(tmp_path / "a", 12))
    train(toy_model(), toy_batches, bce, config(tmp_path / "b", 5))
    resumed = train(toy_model(), toy_batches, bce, config(tmp_path / "b", 12))
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_time_limit_stops_after_a_checkpoint(tmp_path):
    train(toy_model(), toy_batches, bce, config(tmp_path, 10_000, max_seconds=0.0))
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert state["step"] == 1


def _ddp_worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = train(toy_model(), toy_batches, bce, config(Path(folder), 6))
    torch.save(model.state_dict(), Path(folder) / f"rank{rank}.pt")
    close_process_group()


def test_two_gloo_processes_train_in_sync(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    first = torch.load(tmp_path / "rank0.pt", weights_only=True)
    second = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(first[key], second[key]) for key in first)  # gradients were all-reduced
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["step"] == 6


def test_best_validation_model_is_kept_and_resume_takes_the_new_learning_rate(tmp_path):
    scores = iter([0.5, 0.9, 0.7])
    cfg = config(tmp_path, 6, validate_every=2, best_metric="score")
    train(toy_model(), toy_batches, bce, cfg, validate=lambda net: {"score": next(scores)})
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["step"] == 4 and best["metric"] == 0.9
    resumed = TrainConfig(steps=7, checkpoint=tmp_path / "ckpt.pt", log=tmp_path / "log.jsonl", lr=0.001)
    train(toy_model(), toy_batches, bce, resumed)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == 0.001


def test_checkpoint_step_reads_the_step_or_zero(tmp_path):
    from brainkit.train.loop import checkpoint_step, save_checkpoint

    model = torch.nn.Linear(2, 1)
    assert checkpoint_step(tmp_path / "none.pt") == 0
    save_checkpoint(tmp_path / "c.pt", model, torch.optim.Adam(model.parameters()), None, 37)
    assert checkpoint_step(tmp_path / "c.pt") == 37


def test_cosine_schedule_decays_to_zero_and_refuses_a_job_with_its_own(tmp_path):
    import argparse

    from brainkit.train.recipe import add_train_options, train_and_save

    parser = argparse.ArgumentParser()
    add_train_options(parser, "toy", steps=10, lr=0.05)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(["-o", str(tmp_path), "--schedule", "cosine"])
    train_and_save("toy", toy_model(), toy_batches, bce, args, every=(5, 5, 0))
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lrs[0] < 0.05 and lrs[-1] < 1e-9  # half-way down at step 5, zero at the last step
    with pytest.raises(SystemExit, match="own learning-rate schedule"):
        train_and_save("toy", toy_model(), toy_batches, bce, args, scheduler_for=torch.optim.lr_scheduler.StepLR)


def test_on_device_keeps_a_cpu_generator_as_it_is():
    generator = torch.Generator().manual_seed(3)
    assert on_device(generator, torch.device("cpu")) is generator


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_device_draws_the_same_batch_for_the_same_step_on_a_gpu():
    device = torch.device("cuda")
    draws = [torch.rand(4, generator=on_device(step_generator(0, 7), device), device=device) for _ in range(2)]
    other = torch.rand(4, generator=on_device(step_generator(0, 8), device), device=device)
    assert torch.equal(*draws) and not torch.equal(draws[0], other)
