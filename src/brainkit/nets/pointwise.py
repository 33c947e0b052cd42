"""A 1x1x1 convolution computed as a matrix product: the same module, parameters and state dict as
`torch.nn.Conv3d(in, out, kernel_size=1)`, faster on a CPU."""

from __future__ import annotations

import torch

from brainkit.nets.layout import CHANNELS_LAST, channel_rows


class PointwiseConv3d(torch.nn.Conv3d):
    """`Conv3d(in_channels, out_channels, kernel_size=1)` whose forward pass, for one sample (contiguous or
    channels-last; the output is contiguous), is one `addmm` over the voxels. torch's CPU convolution takes a slow
    path for 1x1x1 kernels: on a 2-core AVX2 CPU the segmentation network's last layer (16 -> 33 channels on a
    128^3 window) took 308 ms that way, a third of the whole window, and 140 ms as a matrix product
    (`benchmarks/pointwise.py`). Batches of several samples keep the convolution (a batched product was slower)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1:
            return super().forward(x)
        channels = x.shape[1]
        if x.is_contiguous():
            voxels = x.view(channels, -1)
        elif x.is_contiguous(memory_format=CHANNELS_LAST):
            voxels = channel_rows(x).t()  # a transposed view: no copy
        else:
            return super().forward(x)
        out = torch.addmm(self.bias[:, None], self.weight.view(self.out_channels, channels), voxels)
        return out.view(1, self.out_channels, *x.shape[2:])  # contiguous, whatever the input's layout
