"""Networks for left-right questions: a score that is antisymmetric under mirroring by construction."""

from __future__ import annotations

import torch
from monai.networks.nets import Classifier


class MirrorAntisymmetric(torch.nn.Module):
    """logit(x) = h(x) - h(mirror x), with mirroring along spatial axis 0 (left-right in RAS).

    So logit(mirror x) = -logit(x) exactly: a scan and its mirror always get opposite answers and
    p(x) + p(mirror x) = 1, the symmetric read done inside the model. Input (B, C, X, Y, Z); output (B,).
    """

    def __init__(self, body: torch.nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = self.body(torch.cat([x, x.flip(2)], dim=0)).view(2, x.shape[0])
        return both[0] - both[1]


def mirror_classifier(shape: tuple[int, int, int] = (64, 64, 64),
                      channels: tuple[int, ...] = (16, 32, 64, 128)) -> MirrorAntisymmetric:
    """A small MONAI residual 3D classifier (about 0.6 M parameters at the defaults) made antisymmetric."""
    body = Classifier(in_shape=(1, *shape), classes=1, channels=channels, strides=(2,) * len(channels),
                      num_res_units=1)
    return MirrorAntisymmetric(body)


class MeanLogit(torch.nn.Module):
    """An ensemble: the mean logit of its members (antisymmetric when every member is)."""

    def __init__(self, members: list[torch.nn.Module]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


def ensemble_size(state: dict[str, torch.Tensor]) -> int:
    """Members of a `MeanLogit` state dict (0: the state of a single model)."""
    return len({key.split(".")[1] for key in state if key.startswith("members.")})
