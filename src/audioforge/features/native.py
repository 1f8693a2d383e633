"""The native mel kernel (``_native/mel_kernel.c``): built on first use, loaded with ctypes, used when it can be.

:func:`~audioforge.features.melspectrogram` spends most of a short clip's time outside arithmetic: a dozen numpy and
torch calls around MKL's FFT (1 s at 16 kHz: ~160 us, of which the FFTs are ~65). The kernel does the whole chain
for float32 on the CPU in one call: frames times window, a real FFT of ``n_fft`` as a complex FFT of ``n_fft / 2``
(mixed-radix Stockham, 16 frames per AVX-512 register), the power spectrum and the sparse mel product, written in
librosa's ``(n_mels, n_frames)`` layout.

It is compiled once per machine with the system C compiler (``$CC``, else ``cc``; ``-O3 -march=native``) into the
cache folder (``$AUDIOFORGE_CACHE`` or ``$XDG_CACHE_HOME/audioforge`` or ``~/.cache/audioforge``, under ``native/``,
named by a hash of the source, compiler and flags; written atomically) and loaded from there afterwards. Without a
compiler, on a CPU without AVX-512F, or with ``AUDIOFORGE_NATIVE=0`` it is simply not used and the numpy/torch path
computes the same result. Which path ran is never a matter of correctness: both are tested against librosa.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidParameterError

__all__ = ["MelKernelPlan", "available", "cache_dir", "kernel_plan", "mel_power"]

log = logging.getLogger("audioforge.features.native")

_SOURCE = Path(__file__).with_name("_native") / "mel_kernel.c"
_FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=gnu11")
#: prime factors of ``n_fft / 2`` above this are left to the numpy/torch path (the kernel's direct-DFT buffer size)
_MAX_RADIX = 64


def cache_dir() -> Path:
    """Where audioforge keeps machine-local build products: ``$AUDIOFORGE_CACHE``, else
    ``$XDG_CACHE_HOME/audioforge``, else ``~/.cache/audioforge``."""
    if os.environ.get("AUDIOFORGE_CACHE"):
        return Path(os.environ["AUDIOFORGE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "audioforge"


@functools.lru_cache(maxsize=1)
def _cpu() -> tuple[str, str]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; empty strings elsewhere."""
    model = flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model, flags


def _cpu_has_avx512f() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64") and "avx512f" in _cpu()[1].split()


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc)


def _build(cc: str) -> Path:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    # -march=native code is for this CPU: the key holds the CPU's model and flags as well as source and compiler
    key = hashlib.sha256(_SOURCE.read_bytes() + version.encode() + " ".join(_FLAGS).encode()
                         + "|".join(_cpu()).encode()).hexdigest()[:16]
    target = cache_dir() / "native" / f"mel_kernel-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        res = subprocess.run([cc, *_FLAGS, "-o", tmp, str(_SOURCE)], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"{cc} failed: {res.stderr.strip()[:500]}")
        os.replace(tmp, target)  # atomic: a concurrent build or reader never sees a partial library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    if os.environ.get("AUDIOFORGE_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if not _cpu_has_avx512f():
        log.debug("native mel kernel: this CPU has no AVX-512F; using the numpy/torch path")
        return None
    cc = _compiler()
    if cc is None:
        log.debug("native mel kernel: no C compiler ($CC or cc); using the numpy/torch path")
        return None
    try:
        lib = ctypes.CDLL(str(_build(cc)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("native mel kernel unavailable (%s); using the numpy/torch path", exc)
        return None
    p, i, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    lib.af_mel_power.argtypes = [p, i64, i64, i, i, p, p, p, p, p, i, p, p, p, p]
    lib.af_mel_power.restype = ctypes.c_int
    return lib


def available() -> bool:
    """Whether the kernel is built and loadable on this machine (builds it on the first call)."""
    return _library() is not None


def _radices(m: int) -> list[int] | None:
    out: list[int] = []
    while m % 4 == 0:
        out.append(4)
        m //= 4
    while m % 2 == 0:
        out.append(2)
        m //= 2
    p = 3
    while m > 1:
        while m % p == 0:
            out.append(p)
            m //= p
        p += 2
    return None if any(r > _MAX_RADIX for r in out) else out


@dataclass(frozen=True)
class MelKernelPlan:
    """The constant arrays of one (n_fft, window, filterbank): FFT stages, twiddles, mel CSR. Build with
    :func:`kernel_plan`; the arrays' addresses are taken once, so the plan must stay alive while it is used."""

    n_fft: int
    n_mels: int
    radices: np.ndarray
    twiddles: np.ndarray
    roots: np.ndarray
    post: np.ndarray
    window: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    @functools.cached_property
    def _addresses(self) -> tuple[int, ...]:
        return tuple(int(a.ctypes.data) for a in (self.radices, self.twiddles, self.roots, self.post, self.window,
                                                  self.indptr, self.indices, self.data))


def kernel_plan(n_fft: int, window: np.ndarray, mel_basis: np.ndarray) -> MelKernelPlan | None:
    """A plan for float32 frames of ``n_fft`` samples, or None when the kernel does not cover them (odd ``n_fft``,
    ``n_fft / 2`` with a prime factor above 64, fewer than 4 samples, or no kernel on this machine)."""
    if _library() is None or n_fft < 4 or n_fft % 2:
        return None
    m = n_fft // 2
    radices = _radices(m)
    if radices is None:
        return None
    tw: list[float] = []
    roots: list[float] = []
    ns = 1
    for r in radices:
        k = np.arange(ns)[:, None]
        q = np.arange(1, r)[None, :]
        ang = -2.0 * np.pi * ((q * k) % (ns * r)) / (ns * r)  # exact integer reduction of the angle
        tw.extend(np.stack([np.cos(ang), np.sin(ang)], axis=-1).ravel().tolist())
        e = np.arange(r)
        roots.extend(np.cos(2.0 * np.pi * e / r).tolist() + np.sin(2.0 * np.pi * e / r).tolist())
        ns *= r
    k = np.arange(m + 1)
    ang = -2.0 * np.pi * k / n_fft
    post = np.stack([np.cos(ang), np.sin(ang)], axis=-1).ravel()
    basis = np.asarray(mel_basis, dtype=np.float32)
    rows, cols = np.nonzero(basis)
    indptr = np.zeros(basis.shape[0] + 1, dtype=np.int32)
    np.add.at(indptr, rows + 1, 1)
    return MelKernelPlan(
        n_fft=int(n_fft), n_mels=int(basis.shape[0]), radices=np.asarray(radices, dtype=np.int32),
        twiddles=np.asarray([*tw, 0.0], dtype=np.float32), roots=np.asarray(roots, dtype=np.float32),
        post=post.astype(np.float32), window=np.ascontiguousarray(window, dtype=np.float32),
        indptr=np.cumsum(indptr, dtype=np.int32), indices=cols.astype(np.int32),
        data=np.ascontiguousarray(basis[rows, cols], dtype=np.float32),
    )


def mel_power(frames_ptr: int, n_frames: int, hop: int, plan: MelKernelPlan, out: np.ndarray) -> None:
    """Run the kernel: frame ``t`` is the ``n_fft`` float32 samples at ``frames_ptr + 4 * t * hop``; ``out`` is a
    C-contiguous float32 ``(n_mels, n_frames)`` array. The caller keeps the signal alive and checks the layout."""
    lib = _library()
    if lib is None:  # pragma: no cover - plans are only built when the library loaded
        raise RuntimeError("the native mel kernel is not available")
    if n_frames < 1 or hop < 1:
        raise InvalidParameterError(f"need n_frames >= 1 and hop >= 1, got n_frames={n_frames}, hop={hop}")
    if (not isinstance(out, np.ndarray) or out.dtype != np.float32 or not out.flags.c_contiguous
            or out.shape != (plan.n_mels, n_frames)):
        raise InvalidParameterError(
            f"out must be a C-contiguous float32 array of shape ({plan.n_mels}, {n_frames}), got "
            f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}; allocate it with np.empty")
    a = plan._addresses
    rc = lib.af_mel_power(frames_ptr, n_frames, hop, plan.n_fft, len(plan.radices), a[0], a[1], a[2], a[3], a[4],
                          plan.n_mels, a[5], a[6], a[7], int(out.ctypes.data))
    if rc != 0:
        raise MemoryError(f"the native mel kernel could not allocate its work buffer (n_fft={plan.n_fft})")

