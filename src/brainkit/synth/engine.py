"""The synthetic image engine: batched SynthSeg/SynthMorph-style images from label maps, in torch.

Tensors are ``(B, C, X, Y, Z)`` with spatial axes in the label bank's RAS voxel order (axis 0 runs from the
patient's left to right). Images are float32 in [0, 1]; labels are int64 indices into ``LabelBank.values``.
Every random draw goes through one ``torch.Generator`` seeded at construction, so a seed reproduces a stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from brainkit.synth.intensity import (
    FWHM_TO_SIGMA,
    bias_field,
    gamma_and_noise,
    gaussian_blur,
    gmm_intensities,
    normalise,
    thick_slices,
)
from brainkit.synth.labels import LabelBank, random_shape_labels
from brainkit.synth.spatial import (
    compose_affine,
    control_points,
    dense,
    log_uniform,
    mapped_points,
    pad_labels,
    random_affine,
    sample_nearest,
    smooth_displacement,
    uniform,
)


@dataclass
class SynthConfig:
    """Ranges of every random draw (voxels of the label grid unless said otherwise)."""

    shape: tuple[int, int, int] = (160, 160, 160)
    rotation_deg: float = 15.0
    scaling: float = 0.15
    shear: float = 0.02
    translation: float = 8.0
    deform_std: float = 3.0
    deform_spacing: int = 16
    integrate_steps: int = 0  # > 0: the deformation is a stationary velocity field, integrated
    label_std_max: float = 0.08
    blur_max: float = 1.0  # partial-volume blur sigma
    thick_prob: float = 0.5  # chance of thick slices along one random axis
    thick_max: float = 6.0  # slice thickness up to this many voxels
    bias_std: float = 0.4
    gamma_std: float = 0.3
    noise_max: float = 0.04
    random_shape_labels: int = 12  # labels per random-shape map (when there is no bank)
    strip_prob: float = 0.0  # chance that a bank sample is skull-stripped (non-brain labels become background)
    ordered_contrast_prob: float = 0.0  # chance of tissue-ordered contrast (`intensity.ordered_means`; needs a bank)


@dataclass
class SynthBatch:
    """image (B, 1, X, Y, Z) in [0, 1]; labels (B, 1, X, Y, Z) int64; affine (B, 4, 4) output voxel -> label-map
    voxel; params: the other draws (rotation_deg, scale, shear, translation, map_index, ...)."""

    image: torch.Tensor
    labels: torch.Tensor
    affine: torch.Tensor
    params: dict[str, torch.Tensor] = field(default_factory=dict)


class SynthEngine:
    """Draws batches from a `LabelBank` (or random shapes when `bank` is None). See the module docstring."""

    def __init__(self, bank: LabelBank | None, config: SynthConfig | None = None, seed: int = 0,
                 device: str | torch.device = "cpu"):
        self.bank = bank
        self.config = config or SynthConfig()
        self.device = torch.device(device)
        self.generator = torch.Generator(self.device).manual_seed(seed)
        if bank is not None:
            self.maps = pad_labels(bank.maps.to(self.device))
            self.label_class = bank.intensity_class.to(self.device)
            self.is_brain = bank.is_brain.to(self.device)
            self.tissue = bank.class_tissue.to(self.device)
        else:
            count = self.config.random_shape_labels
            self.label_class = torch.arange(count, device=self.device)
            self.tissue = None

    @property
    def n_classes(self) -> int:
        return int(self.label_class.max()) + 1

    def _source_labels(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 1, ...) padded integer label maps to sample from, which bank map each came from (-1: random) and
        which were skull-stripped."""
        if self.bank is None:
            shape = self.config.shape
            labels = random_shape_labels(batch, shape, self.config.random_shape_labels, generator=self.generator,
                                         device=self.device)
            return pad_labels(labels), torch.full((batch,), -1, device=self.device), torch.zeros(
                batch, dtype=torch.bool, device=self.device)
        index = torch.randint(len(self.maps), (batch,), generator=self.generator, device=self.device)
        source, stripped = self._strip(self.maps[index])
        return source, index, stripped

    def _strip(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Skull-strip a random subset (`strip_prob`) of bank maps: their non-brain labels become index 0
        (label 0, background: a bank's values are sorted and real maps hold 0)."""
        batch = labels.shape[0]
        if self.bank is None or self.config.strip_prob <= 0:  # no draw: other jobs' random streams stay as they were
            return labels, torch.zeros((batch,), dtype=torch.bool, device=self.device)
        stripped = torch.rand((batch,), generator=self.generator, device=self.device) < self.config.strip_prob
        outside = ~self.is_brain[labels.long()] & stripped.view(-1, 1, 1, 1, 1)
        return labels.masked_fill(outside, 0), stripped

    def _transform(self, batch: int, in_shape) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
        """Random affine (output -> source voxels) and control-grid deformation of the output grid."""
        cfg = self.config
        affine, params = random_affine(batch, in_shape, cfg.shape, cfg.rotation_deg, cfg.scaling, cfg.shear,
                                       cfg.translation, self.generator, self.device)
        displacement = smooth_displacement(batch, cfg.shape, cfg.deform_std, cfg.deform_spacing, self.generator,
                                           self.device, cfg.integrate_steps) if cfg.deform_std > 0 else None
        return affine, displacement, params

    def render(self, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A random-contrast image (B, 1, X, Y, Z) in [0, 1] of label indices (B, 1, X, Y, Z)."""
        cfg, g, batch = self.config, self.generator, labels.shape[0]
        image = gmm_intensities(labels, self.label_class, self.n_classes, cfg.label_std_max, g,
                                tissue=self.tissue, ordered_prob=cfg.ordered_contrast_prob)
        sigma = uniform(0, cfg.blur_max, (batch, 3), g, self.device)
        thickness = torch.ones((batch, 3), device=self.device)
        thick = torch.rand((batch,), generator=g, device=self.device) < cfg.thick_prob
        axis = torch.randint(3, (batch,), generator=g, device=self.device)
        factor = uniform(1.5, cfg.thick_max, (batch,), g, self.device)
        rows = torch.arange(batch, device=self.device)
        thickness[rows[thick], axis[thick]] = factor[thick]
        sigma = torch.sqrt(sigma**2 + ((thickness - 1).clamp(min=0) * FWHM_TO_SIGMA * 2) ** 2)
        image = gaussian_blur(image, sigma)
        image = thick_slices(image, thickness)
        image = image * bias_field(image.shape, cfg.bias_std, g, self.device)
        image = gamma_and_noise(normalise(image), cfg.gamma_std, cfg.noise_max, g)
        return image, {"blur_sigma": sigma, "slice_thickness": thickness}

    def generate(self, batch: int) -> SynthBatch:
        """Image plus deformed labels (the segmentation mode)."""
        source, index, stripped = self._source_labels(batch)
        affine, displacement, params = self._transform(batch, tuple(source.shape[2:]))
        shape = self.config.shape
        points = control_points(shape, self.config.deform_spacing, self.device)
        labels = sample_nearest(source, dense(mapped_points(affine, points, displacement, shape), shape)).long()
        image, render_params = self.render(labels)
        return SynthBatch(image, labels, affine, {**params, **render_params, "map_index": index, "stripped": stripped})

    def generate_mirrored(self, batch: int, flip_prob: float = 0.5) -> tuple[SynthBatch, torch.Tensor]:
        """Images of which a random subset is mirrored left-right (axis 0); returns the batch and the flip flags.

        The labels are mirrored too, so a flipped sample shows left structures on the right.
        """
        result = self.generate(batch)
        flipped = torch.rand((batch,), generator=self.generator, device=self.device) < flip_prob
        for name in ("image", "labels"):
            tensor = getattr(result, name)
            setattr(result, name, torch.where(flipped.view(-1, 1, 1, 1, 1), tensor.flip(2), tensor))
        return result, flipped

    def generate_pair(self, batch: int, misaligned_prob: float = 0.5, max_shift: float = 20.0,
                      max_rotation_deg: float = 20.0, min_shift: float = 2.0, min_rotation_deg: float = 2.0,
                      aligned_shift: float = 0.5, aligned_rotation_deg: float = 0.5, warp_std: float = 1.0,
                      log_sizes: bool = False, aligned_warp_std: float = 0.0
                      ) -> tuple[SynthBatch, SynthBatch, torch.Tensor, torch.Tensor]:
        """Two images of one label map with independent contrasts and a known relative transform (regqc).

        The second image's labels are the first's seen through a relative affine T (output voxel -> first
        image voxel). Misaligned pairs get T with a rotation of `min_rotation_deg`..`max_rotation_deg` about a
        random axis or a translation of `min_shift`..`max_shift` voxels (or both), plus a small warp; aligned
        pairs get at most `aligned_shift` voxels and `aligned_rotation_deg`, and a warp of `aligned_warp_std` (a
        registration's residual: real aligned pairs never match voxel for voxel). `log_sizes` draws misalignment
        sizes log-uniformly (as many small, hard ones as gross ones). Returns (fixed, moving, T, misaligned flags).
        """
        g, device, shape = self.generator, self.device, self.config.shape
        source, index, stripped = self._source_labels(batch)
        affine, displacement, params = self._transform(batch, tuple(source.shape[2:]))
        points = control_points(shape, self.config.deform_spacing, device)
        fixed_labels = sample_nearest(source, dense(mapped_points(affine, points, displacement, shape), shape)).long()

        misaligned = torch.rand((batch,), generator=g, device=device) < misaligned_prob
        kind = torch.randint(3, (batch,), generator=g, device=device)  # 0 shift, 1 rotation, 2 both
        size = log_uniform if log_sizes else uniform
        shift_size = torch.where(misaligned & (kind != 1), size(min_shift, max_shift, (batch,), g, device),
                                 uniform(0, aligned_shift, (batch,), g, device))
        angle = torch.where(misaligned & (kind != 0), size(min_rotation_deg, max_rotation_deg, (batch,), g, device),
                            uniform(0, aligned_rotation_deg, (batch,), g, device))
        shift = _random_unit(batch, g, device) * shift_size[:, None]
        rotation = _random_unit(batch, g, device) * angle[:, None]
        relative = compose_affine(shape, shape, rotation, torch.ones((batch, 3), device=device),
                                  torch.zeros((batch, 3), device=device), shift)
        warp = smooth_displacement(batch, shape, warp_std, self.config.deform_spacing, g, device)
        aligned_scale = aligned_warp_std / warp_std if warp_std > 0 else 0.0
        warp = warp * torch.where(misaligned, 1.0, aligned_scale).view(-1, 1, 1, 1, 1)
        moved = mapped_points(relative, points, warp, shape)  # T(x + w(x)), then the shared deformation
        moving_labels = sample_nearest(source, dense(mapped_points(affine, moved, displacement, shape), shape)).long()
        fixed_image, fixed_params = self.render(fixed_labels)
        moving_image, moving_params = self.render(moving_labels)
        common = {**params, "map_index": index, "stripped": stripped, "shift_voxels": shift_size,
                  "rotation_deg_relative": angle}
        fixed = SynthBatch(fixed_image, fixed_labels, affine, {**common, **fixed_params})
        moving = SynthBatch(moving_image, moving_labels, affine @ relative, {**common, **moving_params})
        return fixed, moving, relative, misaligned


def _random_unit(batch: int, generator: torch.Generator, device) -> torch.Tensor:
    vector = torch.randn((batch, 3), generator=generator, device=device)
    return vector / vector.norm(dim=1, keepdim=True).clamp(min=1e-6)
