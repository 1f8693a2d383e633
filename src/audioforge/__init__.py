"""audioforge: real-time audio machine learning in PyTorch.

Subpackages: :mod:`audioforge.audio` (I/O), :mod:`audioforge.features` (librosa- and Kaldi-exact features, batch
and streaming), :mod:`audioforge.corpora` (offline dataset generators).
"""

from __future__ import annotations

from .errors import AudioForgeError

__version__ = "0.1.0"
__all__ = ["AudioForgeError", "__version__"]
