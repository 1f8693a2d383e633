"""The audioforge exception hierarchy.

Every error audioforge raises on purpose derives from :class:`AudioForgeError`, so callers can catch one class.
Each message names what was wrong and how to fix it. Subclasses also derive from the builtin exception a Python
user would expect (``ValueError`` for bad values, ``OSError`` for files), so generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "AudioDTypeError",
    "AudioFileError",
    "AudioForgeError",
    "AudioShapeError",
    "CheckpointError",
    "EmptyAudioError",
    "InvalidAudioError",
    "InvalidParameterError",
    "ManifestError",
    "MissingToolError",
    "NonFiniteAudioError",
    "UnsupportedSampleRateError",
]


class AudioForgeError(Exception):
    """Base class of every error raised by audioforge."""


class InvalidAudioError(AudioForgeError, ValueError):
    """Audio samples that cannot be processed as given."""


class EmptyAudioError(InvalidAudioError):
    """The audio has no samples (or fewer than the operation needs)."""


class NonFiniteAudioError(InvalidAudioError):
    """The audio contains NaN or infinite samples."""


class AudioShapeError(InvalidAudioError):
    """The audio array has the wrong rank or layout."""


class AudioDTypeError(InvalidAudioError):
    """The audio array has a dtype that cannot be interpreted as samples."""


class UnsupportedSampleRateError(AudioForgeError, ValueError):
    """A sample rate that is not positive, not an integer, or not supported by the operation."""


class AudioFileError(AudioForgeError, OSError):
    """An audio file that is missing, unreadable, corrupt or of an unknown format."""


class InvalidParameterError(AudioForgeError, ValueError):
    """A parameter value outside what the function supports."""


class MissingToolError(AudioForgeError, RuntimeError):
    """A required system tool (a Debian package) or optional Python package is not installed."""


class ManifestError(AudioForgeError, ValueError):
    """A corpus manifest that is malformed or points at missing or invalid data."""


class CheckpointError(AudioForgeError, ValueError):
    """A checkpoint or bundle whose keys, shapes or configuration do not match what is expected."""
