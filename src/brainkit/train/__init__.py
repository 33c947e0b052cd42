"""The shared training loop (checkpoint/resume, seeds, logging, DistributedDataParallel)."""

from brainkit.train.loop import TrainConfig, load_checkpoint, on_device, save_checkpoint, step_generator, train

__all__ = ["TrainConfig", "load_checkpoint", "on_device", "save_checkpoint", "step_generator", "train"]
