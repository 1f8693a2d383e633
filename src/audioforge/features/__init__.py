"""Feature front end: librosa-exact STFT / mel / dB / MFCC and Kaldi-exact filterbanks, batch and streaming.

Functions take numpy arrays or torch tensors of shape ``(..., n)`` and return the kind they were given.
"""

from __future__ import annotations

from .dft import power_spectrum, rdft_basis
from .kaldi import KaldiFbank, kaldi_fbank, kaldi_mel_banks, kaldi_mfcc
from .kaldi_stream import BatchedOnlineKaldiFbank, OnlineKaldiFbank
from .mel import fft_frequencies, hz_to_mel, mel_filterbank, mel_frequencies, mel_to_hz
from .spectral import (
    amplitude_to_db,
    db_to_amplitude,
    db_to_power,
    dct_matrix,
    melspectrogram,
    mfcc,
    power_spectrogram,
    power_to_db,
)
from .stft import pad_signal, stft
from .streaming import BatchedStreamingMelSpectrogram, StreamingMelSpectrogram
from .transforms import MFCC, LogMel, MelSpectrogram
from .windows import get_window

__all__ = [
    "MFCC",
    "BatchedOnlineKaldiFbank",
    "BatchedStreamingMelSpectrogram",
    "KaldiFbank",
    "LogMel",
    "MelSpectrogram",
    "OnlineKaldiFbank",
    "StreamingMelSpectrogram",
    "amplitude_to_db",
    "db_to_amplitude",
    "db_to_power",
    "dct_matrix",
    "fft_frequencies",
    "get_window",
    "hz_to_mel",
    "kaldi_fbank",
    "kaldi_mel_banks",
    "kaldi_mfcc",
    "mel_filterbank",
    "mel_frequencies",
    "mel_to_hz",
    "melspectrogram",
    "mfcc",
    "pad_signal",
    "power_spectrogram",
    "power_spectrum",
    "power_to_db",
    "rdft_basis",
    "stft",
]
