"""Synthetic image engine: batched images of random contrast from label maps (SynthSeg/SynthMorph style)."""

from brainkit.synth.engine import SynthBatch, SynthConfig, SynthEngine
from brainkit.synth.labels import LabelBank, label_map_files, random_shape_labels, shared_label_maps

__all__ = ["LabelBank", "SynthBatch", "SynthConfig", "SynthEngine", "label_map_files", "random_shape_labels",
           "shared_label_maps"]
