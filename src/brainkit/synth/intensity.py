"""Random contrast and acquisition effects on batched label maps: GMM intensities, blur, thick slices,
bias field, gamma and noise. All functions take and return ``(B, C, X, Y, Z)`` tensors."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from brainkit.synth.spatial import uniform

FWHM_TO_SIGMA = 1 / (2 * math.sqrt(2 * math.log(2)))


def gmm_intensities(labels: torch.Tensor, label_class: torch.Tensor, n_classes: int, std_max: float,
                    generator: torch.Generator | None, dark_background_prob: float = 0.8,
                    tissue: torch.Tensor | None = None, ordered_prob: float = 0.0) -> torch.Tensor:
    """One Gaussian per intensity class: mean U(0, 1), std U(0, std_max); class 0 (background) is dark
    (mean below 0.1) with probability `dark_background_prob`. With `tissue` (each class's `TISSUE_GROUP` code) a
    share `ordered_prob` of the samples gets tissue-ordered means (`ordered_means`). Returns (B, 1, X, Y, Z)."""
    batch, device = labels.shape[0], labels.device
    means = uniform(0, 1, (batch, n_classes), generator, device)
    dark = torch.rand((batch,), generator=generator, device=device) < dark_background_prob
    means[:, 0] = torch.where(dark, means[:, 0] * 0.1, means[:, 0])
    if tissue is not None and ordered_prob > 0:  # no draw otherwise: other jobs' random streams stay as they were
        means = ordered_means(means, tissue.to(device), ordered_prob, generator)
    stds = uniform(0, std_max, (batch, n_classes), generator, device)
    classes = label_class.to(device)[labels.reshape(batch, -1)]
    noise = torch.randn(classes.shape, generator=generator, device=device)
    image = torch.gather(means, 1, classes) + torch.gather(stds, 1, classes) * noise
    return image.view(labels.shape)


def ordered_means(means: torch.Tensor, tissue: torch.Tensor, prob: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """Class means (B, n_classes) where a random share `prob` of the samples is redrawn in tissue order: white
    matter and cortex anywhere in [0, 1], each subcortical grey class somewhere between them (as in T1, T2, PD and
    FLAIR images; fully random means seldom put thalamus and pallidum that close to white matter), cerebellar
    white matter and cortex within 0.1 of their cerebral twins. Classes of `OTHER_TISSUE` keep their means."""
    batch, n_classes = means.shape
    device = means.device
    ordered = torch.rand((batch,), generator=generator, device=device) < prob
    white = torch.rand((batch, 1), generator=generator, device=device)
    cortex = torch.rand((batch, 1), generator=generator, device=device)
    between = cortex + torch.rand((batch, n_classes), generator=generator, device=device) * (white - cortex)
    jitter = (torch.rand((batch, n_classes), generator=generator, device=device) - 0.5) * 0.2
    options = torch.stack([means, white.expand_as(means), cortex.expand_as(means), between, white + jitter,
                           cortex + jitter])  # indexed by TISSUE_GROUP code
    drawn = torch.gather(options, 0, tissue.view(1, 1, -1).expand(1, batch, n_classes))[0].clamp(0, 1)
    return torch.where(ordered[:, None], drawn, means)


def gaussian_blur(volume: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with a per-sample, per-axis sigma (B, 3) in voxels, by FFT (borders wrap around)."""
    spatial = tuple(volume.shape[2:])
    spectrum = torch.fft.rfftn(volume, dim=(2, 3, 4))
    transfer = torch.ones((), device=volume.device)
    for axis, n in enumerate(spatial):
        freq = (torch.fft.rfftfreq if axis == 2 else torch.fft.fftfreq)(n, device=volume.device)
        response = torch.exp(-2 * (math.pi * freq[None] * sigma[:, axis : axis + 1]) ** 2)
        view = [volume.shape[0], 1, 1, 1, 1]
        view[2 + axis] = -1
        transfer = transfer * response.view(view)
    return torch.fft.irfftn(spectrum * transfer, s=spatial, dim=(2, 3, 4))


def thick_slices(volume: torch.Tensor, thickness: torch.Tensor) -> torch.Tensor:
    """Keep one slice every `thickness` voxels (B, 3; 1 = untouched) and interpolate linearly between them,
    as a thick-slice acquisition upsampled back to the grid looks. Blur first to model the slice profile.

    Kept slices sit at multiples of a thickness that need not be whole voxels; they are read there by linear
    interpolation, so the image stays where its labels are (a linear ramp comes out unchanged)."""
    for axis in range(3):
        rows = torch.nonzero(thickness[:, axis] > 1).flatten()
        if len(rows):
            volume = volume.index_copy(0, rows, _thick_along(volume[rows], 2 + axis, thickness[rows, axis]))
    return volume


def _thick_along(volume: torch.Tensor, dim: int, step: torch.Tensor) -> torch.Tensor:
    """Slices every `step` (B,) voxels along `dim`, read where they lie, then linearly interpolated back."""
    n = volume.shape[dim]
    count = math.ceil((n - 1) / float(step.min())) + 2
    kept_at = (torch.arange(count, device=volume.device)[None] * step[:, None]).clamp(max=n - 1)
    kept = _values_at(volume, dim, kept_at)
    position = torch.arange(n, dtype=torch.float32, device=volume.device)[None]
    below = torch.floor(position / step[:, None]).long().clamp(max=count - 1)
    above = (below + 1).clamp(max=count - 1)
    low, high = kept_at.gather(1, below), kept_at.gather(1, above)
    weight = _along(((position - low) / (high - low).clamp(min=1e-6)).clamp(0, 1), volume, dim)
    return _take(kept, dim, below) * (1 - weight) + _take(kept, dim, above) * weight


def _along(values: torch.Tensor, volume: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, n) values laid along `dim` of a (B, 1, X, Y, Z) volume, broadcastable against it."""
    shape = [volume.shape[0], 1, 1, 1, 1]
    shape[dim] = values.shape[1]
    return values.view(shape)


def _take(source: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """The slices of `source` along `dim` at whole-voxel `index` (B, n), per row."""
    expand = list(source.shape)
    expand[dim] = index.shape[1]
    return torch.gather(source, dim, _along(index, source, dim).expand(expand))


def _values_at(volume: torch.Tensor, dim: int, positions: torch.Tensor) -> torch.Tensor:
    """The volume linearly interpolated along `dim` at fractional voxel `positions` (B, n)."""
    below = positions.floor().clamp(0, volume.shape[dim] - 1)
    above = (below + 1).clamp(max=volume.shape[dim] - 1)
    fraction = _along(positions - below, volume, dim)
    return _take(volume, dim, below.long()) * (1 - fraction) + _take(volume, dim, above.long()) * fraction


def bias_field(shape: tuple[int, ...], std_max: float, generator: torch.Generator | None, device="cpu",
               coarse: int = 4) -> torch.Tensor:
    """Smooth multiplicative field exp(N(0, s)) with s up to `std_max`, as (B, 1, X, Y, Z)."""
    batch = shape[0]
    std = uniform(0, std_max, (batch, 1, 1, 1, 1), generator, device)
    field = torch.randn((batch, 1, coarse, coarse, coarse), generator=generator, device=device) * std
    return torch.exp(F.interpolate(field, size=tuple(shape[2:]), mode="trilinear", align_corners=True))


def normalise(volume: torch.Tensor, quantile: float = 0.999) -> torch.Tensor:
    """Per-sample min to 0 and the `quantile` to 1 (estimated on a strided subsample), clipped to [0, 1]."""
    flat = volume.reshape(volume.shape[0], -1)
    sub = flat[:, :: max(1, flat.shape[1] // 200_000)]
    low = sub.min(dim=1).values.view(-1, 1, 1, 1, 1)
    high = torch.quantile(sub, quantile, dim=1).view(-1, 1, 1, 1, 1)
    return ((volume - low) / (high - low).clamp(min=1e-6)).clamp(0, 1)


def gamma_and_noise(volume: torch.Tensor, gamma_std: float, noise_max: float,
                    generator: torch.Generator | None) -> torch.Tensor:
    """Gamma exp(N(0, gamma_std)) on a [0, 1] volume, then Gaussian noise of std up to `noise_max`, clipped."""
    batch, device = volume.shape[0], volume.device
    gamma = torch.exp(torch.randn((batch, 1, 1, 1, 1), generator=generator, device=device) * gamma_std)
    std = uniform(0, noise_max, (batch, 1, 1, 1, 1), generator, device)
    noise = torch.randn(volume.shape, generator=generator, device=device) * std
    return (volume.clamp(min=0) ** gamma + noise).clamp(0, 1)
