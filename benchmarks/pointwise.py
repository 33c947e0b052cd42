"""Milliseconds for the segmentation network's last layer (16 -> 33 channels, 1x1x1, on one 128^3 window):
torch's Conv3d against brainkit's PointwiseConv3d (the same parameters, computed as one matrix product).

    python benchmarks/pointwise.py        # writes the `pointwise` section of docs/benchmarks.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, seconds_per_call, write_section  # noqa: E402

from brainkit.nets.pointwise import PointwiseConv3d  # noqa: E402
from brainkit.runtime import bf16_autocast, configure  # noqa: E402

SIDE, IN_CHANNELS, OUT_CHANNELS = 128, 16, 33


def main() -> None:
    configure(threads=2)  # the commands' own settings
    torch.manual_seed(0)
    pointwise = PointwiseConv3d(IN_CHANNELS, OUT_CHANNELS)
    conv = torch.nn.Conv3d(IN_CHANNELS, OUT_CHANNELS, kernel_size=1)
    conv.load_state_dict(pointwise.state_dict())
    x = torch.rand(1, IN_CHANNELS, SIDE, SIDE, SIDE)
    rows = []
    with torch.no_grad(), bf16_autocast("cpu"):
        precision = "bfloat16" if torch.is_autocast_enabled("cpu") else "float32"
        for name, layer in (("torch.nn.Conv3d", conv), ("PointwiseConv3d", pointwise)):
            ms = 1000 * seconds_per_call(lambda layer=layer: layer(x), repeats=5)
            rows.append([name, precision, f"{ms:.0f}"])
        difference = (pointwise(x).float() - conv(x).float()).abs().max().item()
    table = markdown_table(["layer", "precision", "ms per 128^3 window"], rows)
    body = (f"## 1x1x1 convolution (`python benchmarks/pointwise.py`)\n\n{machine()}. The segmentation network's last "
            f"layer, {IN_CHANNELS} -> {OUT_CHANNELS} channels on a {SIDE}^3 window (median of 5 calls); largest "
            f"difference between the two outputs {difference:.1e}.\n\n{table}")
    print(body)
    write_section("pointwise", body)


if __name__ == "__main__":
    main()
