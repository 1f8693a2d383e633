"""Audio tagging with PaSST (Patchout faSt Spectrogram Transformer).

- :class:`PasstFrontend`: the official log-mel front end (``AugmentMelSTFT``), numerically exact;
- :class:`PaSST` and :func:`build_passt`: the transformer with the official parameter names, presets ``passt_s``
  (stride 10), ``passt_s_s12`` / ``_s14`` / ``_s16``, ``passt_l`` and the small ``passt_tiny`` / ``passt_mini``;
- :func:`load_official_checkpoint`: an official ``.pt`` state_dict -> :class:`audioforge.bundle.Bundle`, strictly
  checked;
- :class:`Tagger`: load a bundle, tag audio of any rate and length (sliding windows), top-k, embeddings, timeline;
- :mod:`audioforge.tagging.hear`: the HEAR 2021 API.
"""

from __future__ import annotations

from .checkpoint import AUDIOSET_NUM_CLASSES, default_labels, describe_state_dict, load_official_checkpoint, read_labels
from .frontend import PasstFrontend
from .infer import DEFAULT_BUNDLE, Tagger, TaggingResult, build_tagging_modules
from .model import PRESETS, PaSST, available_presets, build_passt, count_parameters, preset_config

__all__ = [
    "AUDIOSET_NUM_CLASSES",
    "DEFAULT_BUNDLE",
    "PRESETS",
    "PaSST",
    "PasstFrontend",
    "Tagger",
    "TaggingResult",
    "available_presets",
    "build_passt",
    "build_tagging_modules",
    "count_parameters",
    "default_labels",
    "describe_state_dict",
    "load_official_checkpoint",
    "preset_config",
    "read_labels",
]
