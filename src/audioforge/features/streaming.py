"""Streaming mel spectrograms that give the same frames as :func:`~audioforge.features.melspectrogram`.

:class:`StreamingMelSpectrogram` takes 1-D chunks of any size (one sample up to minutes) and returns each frame as soon
as all of its samples are in; :meth:`~StreamingMelSpectrogram.flush` returns the frames that need the end of the
signal. The concatenation of all outputs equals ``melspectrogram(whole_signal, ...)`` (float32: within ~1e-7 of the
maximum) for every chunking, including the centre padding of the batch function at both ends:

* ``pad_mode='constant'`` (the default): the left padding is zeros, so the first frame is out once
  ``n_fft - n_fft // 2`` samples are in.
* ``'edge'`` / ``'linear_ramp'`` need the first sample, ``'symmetric'`` the first ``n_fft // 2`` and ``'reflect'``
  the first ``n_fft // 2 + 1`` samples before the first frame can be computed; a signal shorter than that is padded
  at :meth:`flush` exactly as ``numpy.pad`` does (repeated reflection included).
* The right padding (``center=True``) depends on the last samples, so the last ``~n_fft / (2 * hop)`` frames come
  out of :meth:`flush`.

Memory is ``O(n_fft)`` per stream (plus the chunk being processed), whatever the stream length. The classes
compute on the CPU; torch chunks on another device are copied to the CPU and the output is moved back. An instance
holds preallocated work buffers: use one instance per thread.

:class:`BatchedStreamingMelSpectrogram` steps many independent streams at once and computes the frames of all of
them in one batched op.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import AudioDTypeError, AudioShapeError, InvalidParameterError, NonFiniteAudioError
from ._io import check_positive_int
from .dft import factored_power
from .stft import pad_signal
from .transforms import MelSpectrogram, _check_bool, _check_db

__all__ = ["BatchedStreamingMelSpectrogram", "StreamingMelSpectrogram"]

_NP_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def _as_chunk(chunk: Any, name: str = "chunk") -> tuple[np.ndarray, bool, torch.device | None]:
    """Validate a 1-D float chunk; return it as a numpy array (no copy on the CPU), whether it was torch, its device."""
    device = None
    is_torch = isinstance(chunk, torch.Tensor)
    if is_torch:
        if not chunk.is_floating_point():
            raise AudioDTypeError(
                f"{name} has dtype {chunk.dtype}; expected float samples in [-1, 1] "
                "(convert integer PCM with audioforge.audio.pcm_to_float)"
            )
        t = chunk.detach() if chunk.requires_grad else chunk
        if not t.is_cpu:
            device = t.device
            t = t.cpu()
        if t.dtype not in _NUMPY_FLOATS:
            t = t.float()
        arr = t.numpy()
    elif isinstance(chunk, np.ndarray):
        arr = chunk
        if arr.dtype.kind != "f":
            raise AudioDTypeError(
                f"{name} has dtype {arr.dtype}; expected float samples in [-1, 1] "
                "(convert integer PCM with audioforge.audio.pcm_to_float)"
            )
    else:
        raise AudioDTypeError(f"{name} must be a numpy array or torch tensor, got {type(chunk).__name__}")
    if arr.ndim != 1:
        raise AudioShapeError(f"{name} has shape {tuple(arr.shape)}; expected a 1-D chunk of mono samples (n,)")
    if not np.isfinite(arr).all():
        raise NonFiniteAudioError(f"{name} contains NaN or infinite samples; clean or clip the signal first")
    return arr, is_torch, device


class _Engine:
    """Settings and per-frame arithmetic shared by the streaming classes (CPU, one dtype)."""

    def __init__(
        self,
        *,
        log: bool,
        ref: float,
        amin: float,
        top_db: float | None,
        dtype: Any,
        extra: int | None,
        mel_kwargs: dict[str, Any],
    ) -> None:
        tdtype = dtype
        if not isinstance(dtype, torch.dtype):
            try:
                tdtype = {np.float32: torch.float32, np.float64: torch.float64}.get(np.dtype(dtype).type)
            except TypeError:
                tdtype = None
        if tdtype not in _NP_DTYPES:
            raise InvalidParameterError(f"dtype must be float32 or float64, got {dtype!r}")
        self.mel = MelSpectrogram(**mel_kwargs, dtype=tdtype)
        self.log = _check_bool(log, "log")
        self.ref, self.amin, top_db = _check_db(ref, amin, top_db)
        if top_db is not None:
            raise InvalidParameterError(
                "top_db is not supported when streaming: librosa's top_db floor uses the maximum of the WHOLE output, "
                "which a stream cannot know until it ends; pass top_db=None (and clamp with a fixed floor yourself "
                "if needed) or compute power_to_db on the complete spectrogram"
            )
        m = self.mel
        self.tdtype, self.npdtype = tdtype, _NP_DTYPES[tdtype]
        self.n_fft, self.hop, self.n_mels, self.n_freq = m.n_fft, m.hop_length, m.n_mels, m.n_freq
        self.center, self.pad_mode, self.power, self.dft = m.center, m.pad_mode, m.power, m.dft
        self.left = self.n_fft // 2 if self.center else 0
        self.right = self.left
        if self.left == 0:
            self.need_left = 0
        else:
            self.need_left = {"constant": 0, "edge": 1, "linear_ramp": 1, "symmetric": self.left,
                              "reflect": self.left + 1}[self.pad_mode]
        # a row keeps the last ``keep`` padded samples: enough for every pending frame, for the left padding while
        # it is unknown (at most n_fft // 2 + 1 samples in) and for the right padding at flush
        self.keep = self.n_fft + 1
        extra = max(self.hop, 1024) if extra is None else check_positive_int(extra, "max_inplace_chunk")
        self.cap = self.keep + extra
        self.ref_db = float(10.0 * torch.log10(torch.maximum(torch.tensor(self.ref, dtype=tdtype),
                                                             torch.tensor(self.amin, dtype=tdtype))))
        self.window_np = m.window.numpy()
        self.mel_t = m.mel_basis.T.contiguous()  # (F, n_mels)
        # preallocated single-frame work area of the fft path (numpy views share the tensors' memory)
        self._x_t = torch.empty(self.n_fft, dtype=tdtype)
        self._x = self._x_t.numpy()
        self._spec = torch.empty(self.n_freq, dtype=torch.complex64 if tdtype == torch.float32 else torch.complex128)
        self._ri = torch.view_as_real(self._spec).numpy()
        self._sq = np.empty((self.n_freq, 2), dtype=self.npdtype)
        self._p_t = torch.empty(1, self.n_freq, dtype=tdtype)
        self._p = self._p_t.numpy()[0]

    # --- arithmetic -----------------------------------------------------------------------------------------------

    def _finish(self, mel: torch.Tensor) -> torch.Tensor:
        if self.log:
            a = mel.numpy()
            np.maximum(a, self.amin, out=a)
            np.log10(a, out=a)
            a *= 10.0
            if self.ref_db != 0.0:  # ref=1 (the default) gives an offset of exactly 0
                a -= self.ref_db
        return mel

    def frames_to_mel(self, frames: torch.Tensor) -> torch.Tensor:
        """``(K, n_fft)`` frames (unwindowed) -> fresh ``(K, n_mels)`` tensor."""
        if frames.shape[0] == 1 and self.dft == "fft":
            return self.one_frame(frames[0].numpy())
        if self.dft == "fft":
            ri = torch.view_as_real(torch.fft.rfft(frames * self.mel.window, dim=-1))  # (K, F, 2)
            sq = ri * ri
            p = sq[..., 0] + sq[..., 1]
        elif self.dft == "matmul":
            out = torch.matmul(frames, self.mel.dft_basis)  # (K, 2F): real parts, then imaginary parts
            sq = out * out
            p = sq[:, : self.n_freq] + sq[:, self.n_freq :]
        else:
            p = factored_power(frames * self.mel.window, self.mel.dft_stage1, self.mel.dft_stage2)
        if self.power != 2.0:
            p = torch.sqrt(p) if self.power == 1.0 else torch.pow(p, self.power / 2.0)
        return self._finish(torch.mm(p, self.mel_t))

    def one_frame(self, frame: np.ndarray) -> torch.Tensor:
        """The hot path: one frame (numpy view of the buffer) -> ``(1, n_mels)``; the output is the only allocation.

        A handful of calls with preallocated outputs: per-op dispatch, not arithmetic, sets the cost of one frame.
        """
        np.multiply(frame, self.window_np, out=self._x)
        torch.fft.rfft(self._x_t, out=self._spec)
        sq = self._sq
        np.multiply(self._ri, self._ri, out=sq)
        np.add(sq[:, 0], sq[:, 1], out=self._p)
        if self.power != 2.0:
            if self.power == 1.0:
                np.sqrt(self._p, out=self._p)
            else:
                np.power(self._p, self.power / 2.0, out=self._p)
        return self._finish(torch.mm(self._p_t, self.mel_t))

    # --- buffer logic (one stream: a row right-aligned at the newest sample) ----------------------------------------

    def fresh_state(self) -> tuple[int, int, int, bool]:
        """``(fill, n_y, emitted, left_ready)`` of an empty stream; ``fill`` counts padded samples (left pad + y)."""
        return self.left, 0, 0, self.need_left == 0

    def ready_frames(self, fill: int, left_ready: bool) -> int:
        if not left_ready or fill < self.n_fft:
            return 0
        return (fill - self.n_fft) // self.hop + 1

    def write_left_pad(self, work: np.ndarray, fill: int) -> None:
        """Write the left padding (P positions 0..left-1) computed from the first samples of y held in ``work``."""
        base = work.shape[0] - fill
        head = torch.from_numpy(work[base + self.left : base + self.left + self.need_left])
        work[base : base + self.left] = pad_signal(head, self.left, 0, self.pad_mode)[: self.left].numpy()

    def ingest(
        self, row: np.ndarray, row_t: torch.Tensor, arr: np.ndarray, fill: int, n_y: int, left_ready: bool
    ) -> tuple[np.ndarray, torch.Tensor, int, int, bool]:
        """Append ``arr`` to a stream's row; return ``(work, work_t, fill, n_y, left_ready)``.

        ``work`` ends at the newest sample and holds at least the last ``keep`` padded samples (``row`` itself when
        the chunk fits, else a new array whose tail is copied into ``row``).
        """
        n = arr.shape[0]
        cap, keep = self.cap, self.keep
        fill += n
        n_y += n
        if n <= cap - keep:
            row[cap - n - keep : cap - n] = row[cap - keep :]
            row[cap - n :] = arr
            work, work_t = row, row_t
            if not left_ready and n_y >= self.need_left:
                self.write_left_pad(work, fill)
                left_ready = True
        else:
            work = np.empty(keep + n, dtype=self.npdtype)
            work[:keep] = row[cap - keep :]
            work[keep:] = arr
            if not left_ready and n_y >= self.need_left:
                self.write_left_pad(work, fill)
                left_ready = True
            row[:] = work[-cap:]
            work_t = torch.from_numpy(work)
        return work, work_t, fill, n_y, left_ready

    def frames_view(self, work_t: torch.Tensor, fill: int, first: int, k: int) -> torch.Tensor:
        """Frames ``first .. first + k - 1`` of the padded signal from ``work_t`` (which ends at P position fill)."""
        start = work_t.shape[0] - fill + first * self.hop
        return work_t[start : start + (k - 1) * self.hop + self.n_fft].unfold(0, self.n_fft, self.hop)

    def flush_frames(
        self, row_t: torch.Tensor, fill: int, n_y: int, emitted: int, left_ready: bool
    ) -> torch.Tensor | None:
        """The frames still pending at the end of the stream (with the right padding), or None."""
        if n_y == 0:
            return None
        total_len = fill + self.right
        total = (total_len - self.n_fft) // self.hop + 1 if total_len >= self.n_fft else 0
        k = total - emitted
        if k <= 0:
            return None
        cap = self.cap
        if not left_ready:  # a signal shorter than the left padding needs: pad all of it as numpy.pad does
            padded = pad_signal(row_t[cap - n_y :], self.left, self.right, self.pad_mode)
            base = 0
        else:
            m = min(fill, self.keep)
            parts = [row_t[cap - m :]]
            if self.right:
                tail = row_t[cap - min(n_y, self.n_fft) :]
                parts.append(pad_signal(tail, 0, self.right, self.pad_mode)[tail.shape[0] :])
            padded = torch.cat(parts)
            base = fill - m
        start = emitted * self.hop - base
        return padded[start : start + (k - 1) * self.hop + self.n_fft].unfold(0, self.n_fft, self.hop)

    # --- outputs ----------------------------------------------------------------------------------------------------

    def empty(self, is_torch: bool, device: torch.device | None) -> Any:
        if is_torch:
            return torch.empty(self.n_mels, 0, dtype=self.tdtype, device=device)
        return np.empty((self.n_mels, 0), dtype=self.npdtype)

    def output(self, mel: torch.Tensor, is_torch: bool, device: torch.device | None) -> Any:
        """``(K, n_mels)`` -> ``(n_mels, K)`` in the caller's kind (a transposed view: no copy on the CPU)."""
        if not is_torch:
            return mel.numpy().T
        return mel.T if device is None else mel.T.to(device)

    def split_output(
        self, mel: torch.Tensor, counts: list[int], is_torch: bool, device: torch.device | None
    ) -> list[Any]:
        """Split ``(K, n_mels)`` into per-stream ``(n_mels, k_s)`` outputs (``sum(counts) == K``)."""
        if not is_torch:
            a = mel.numpy().T
            out, pos = [], 0
            for k in counts:
                out.append(a[:, pos : pos + k])
                pos += k
            return out
        if device is not None:
            mel = mel.to(device)
        return list(torch.split(mel.T, counts, dim=1))


def _engine_args(
    log: bool, ref: float, amin: float, top_db: float | None, dtype: Any, extra: int | None, kwargs: dict[str, Any]
) -> _Engine:
    for bad in ("y", "S"):
        if bad in kwargs:
            raise InvalidParameterError(f"{bad} is not a streaming parameter; pass samples to accept_waveform()")
    return _Engine(log=log, ref=ref, amin=amin, top_db=top_db, dtype=dtype, extra=extra, mel_kwargs=kwargs)


class StreamingMelSpectrogram:
    """Mel spectrogram of a stream of 1-D chunks, frame-exact with :func:`~audioforge.features.melspectrogram`.

    Parameters
    ----------
    sr, n_fft, hop_length, win_length, window, center, pad_mode, power, n_mels, fmin, fmax, htk, norm, dft
        As :class:`~audioforge.features.transforms.MelSpectrogram` (librosa's defaults: hop 512,
        ``pad_mode='constant'``, ``center=True``).
    log
        Return ``power_to_db(mel, ref=ref, amin=amin, top_db=None)`` instead of the power mel spectrogram.
    ref, amin
        The dB conversion (``ref`` a number).
    top_db
        Must be None: librosa's ``top_db`` floor uses the maximum of the whole output, which a stream cannot know
        (raises :class:`~audioforge.errors.InvalidParameterError` otherwise).
    dtype
        float32 (default) or float64: the dtype of the buffer, the arithmetic and the output. Chunks of another
        float dtype are converted.
    max_inplace_chunk
        Chunks up to this many samples are appended to a preallocated buffer; longer ones are processed from a
        temporary copy (default ``max(hop_length, 1024)``).

    Notes
    -----
    ``accept_waveform(chunk)`` (also ``stream(chunk)``) returns the newly completed frames, shape ``(n_mels, k)``
    with ``k >= 0``, as a numpy array for numpy input and a torch tensor for torch input. :meth:`flush` ends the
    stream and returns the remaining frames (in the kind of the last chunk; torch if there was none); after it,
    :meth:`reset` starts a new stream. With ``center=False`` a stream shorter than ``n_fft`` gives no frame (the
    batch function raises instead).
    """

    def __init__(
        self,
        *,
        log: bool = False,
        ref: float = 1.0,
        amin: float = 1e-10,
        top_db: float | None = None,
        dtype: Any = torch.float32,
        max_inplace_chunk: int | None = None,
        **mel_kwargs: Any,
    ) -> None:
        self._e = _engine_args(log, ref, amin, top_db, dtype, max_inplace_chunk, mel_kwargs)
        self._row_t = torch.zeros(self._e.cap, dtype=self._e.tdtype)
        self._row = self._row_t.numpy()
        self._last_kind: tuple[bool, torch.device | None] = (True, None)
        self.reset()

    @property
    def n_mels(self) -> int:
        return self._e.n_mels

    @property
    def samples_seen(self) -> int:
        """Samples accepted since the last reset."""
        return self._n_y

    @property
    def frames_emitted(self) -> int:
        """Frames returned since the last reset."""
        return self._emitted

    def reset(self) -> None:
        """Forget the stream: the next chunk starts a new signal."""
        self._row.fill(0)
        self._fill, self._n_y, self._emitted, self._left_ready = self._e.fresh_state()
        self._finished = False

    def accept_waveform(self, chunk: Any) -> Any:
        """Append ``chunk`` (1-D numpy array or torch tensor, any length) and return the frames it completes."""
        e = self._e
        arr, is_torch, device = _as_chunk(chunk)
        if self._finished:
            raise InvalidParameterError("this stream was flushed; call reset() before feeding a new signal")
        self._last_kind = (is_torch, device)
        if arr.shape[0] == 0:
            return e.empty(is_torch, device)
        work, work_t, fill, n_y, left_ready = e.ingest(self._row, self._row_t, arr, self._fill, self._n_y,
                                                       self._left_ready)
        self._fill, self._n_y, self._left_ready = fill, n_y, left_ready
        ready = e.ready_frames(fill, left_ready)
        k = ready - self._emitted
        if k <= 0:
            return e.empty(is_torch, device)
        first = self._emitted
        self._emitted = ready
        if k == 1 and e.dft == "fft":  # hot path: no tensor views, no allocation but the output
            start = work.shape[0] - fill + first * e.hop
            mel = e.one_frame(work[start : start + e.n_fft])
        else:
            mel = e.frames_to_mel(e.frames_view(work_t, fill, first, k))
        return e.output(mel, is_torch, device)

    __call__ = accept_waveform

    def flush(self) -> Any:
        """End the stream and return its remaining frames (those that need the right padding); idempotent."""
        e = self._e
        is_torch, device = self._last_kind
        if self._finished:
            return e.empty(is_torch, device)
        self._finished = True
        frames = e.flush_frames(self._row_t, self._fill, self._n_y, self._emitted, self._left_ready)
        if frames is None:
            return e.empty(is_torch, device)
        self._emitted += frames.shape[0]
        return e.output(e.frames_to_mel(frames), is_torch, device)


class BatchedStreamingMelSpectrogram:
    """``num_streams`` independent :class:`StreamingMelSpectrogram` streams stepped together.

    Parameters
    ----------
    num_streams
        Number of streams (slots); each can be reset on its own.
    **kwargs
        As :class:`StreamingMelSpectrogram`.

    Notes
    -----
    :meth:`accept_waveform` takes either a sequence of ``num_streams`` 1-D chunks of any (different) sizes, ``None``
    for a stream with no new audio, or a 2-D ``(num_streams, n)`` array/tensor when every stream gets ``n`` samples
    (the fast server path: no per-stream Python work when the streams are in step). The frames of all streams are
    computed in one batched op. It returns a list of ``num_streams`` outputs ``(n_mels, k_s)`` (numpy for numpy input,
    torch for torch). Each stream's outputs concatenated equal ``melspectrogram`` of that stream's signal.
    """

    def __init__(
        self,
        num_streams: int,
        *,
        log: bool = False,
        ref: float = 1.0,
        amin: float = 1e-10,
        top_db: float | None = None,
        dtype: Any = torch.float32,
        max_inplace_chunk: int | None = None,
        **mel_kwargs: Any,
    ) -> None:
        if isinstance(num_streams, bool) or not isinstance(num_streams, (int, np.integer)) or num_streams < 1:
            raise InvalidParameterError(f"num_streams must be an integer >= 1, got {num_streams!r}")
        self.num_streams = int(num_streams)
        self._e = e = _engine_args(log, ref, amin, top_db, dtype, max_inplace_chunk, mel_kwargs)
        s = self.num_streams
        self._buf_t = torch.zeros(s, e.cap, dtype=e.tdtype)
        self._buf = self._buf_t.numpy()
        self._fill = np.zeros(s, dtype=np.int64)
        self._n_y = np.zeros(s, dtype=np.int64)
        self._emitted = np.zeros(s, dtype=np.int64)
        self._left_ready = np.zeros(s, dtype=bool)
        self._finished = np.zeros(s, dtype=bool)
        self._arange = np.arange(e.n_fft)
        self._last_kind: tuple[bool, torch.device | None] = (True, None)
        self.reset()

    @property
    def n_mels(self) -> int:
        return self._e.n_mels

    def _check_stream(self, stream: Any) -> int:
        if isinstance(stream, bool) or not isinstance(stream, (int, np.integer)) or not (
            0 <= stream < self.num_streams
        ):
            raise InvalidParameterError(f"stream must be an index in [0, {self.num_streams}), got {stream!r}")
        return int(stream)

    def reset(self, stream: int | None = None) -> None:
        """Reset one stream (by index) or, with None, all of them."""
        fill, n_y, emitted, left_ready = self._e.fresh_state()
        idx = slice(None) if stream is None else self._check_stream(stream)
        self._buf[idx] = 0
        self._fill[idx], self._n_y[idx], self._emitted[idx] = fill, n_y, emitted
        self._left_ready[idx], self._finished[idx] = left_ready, False

    def samples_seen(self, stream: int) -> int:
        """Samples accepted by ``stream`` since its last reset."""
        return int(self._n_y[self._check_stream(stream)])

    # --- accepting audio ------------------------------------------------------------------------------------------

    def accept_waveform(self, chunks: Any) -> list[Any]:
        """Append one chunk per stream and return the newly completed frames of every stream."""
        if isinstance(chunks, (np.ndarray, torch.Tensor)) and chunks.ndim == 2:
            return self._accept_block(chunks)
        if isinstance(chunks, (np.ndarray, torch.Tensor)) or not isinstance(chunks, (list, tuple)):
            raise AudioShapeError(
                f"pass a list of {self.num_streams} 1-D chunks or a 2-D (num_streams, n) array, got "
                f"{type(chunks).__name__} of shape {tuple(getattr(chunks, 'shape', ()))}"
            )
        if len(chunks) != self.num_streams:
            raise AudioShapeError(f"got {len(chunks)} chunks for {self.num_streams} streams; pass one per stream")
        e = self._e
        parsed = []
        kinds = set()
        for i, c in enumerate(chunks):
            if c is None:
                parsed.append(None)
                continue
            arr, is_torch, device = _as_chunk(c, name=f"chunks[{i}]")
            kinds.add((is_torch, device))
            if arr.shape[0] and self._finished[i]:
                raise InvalidParameterError(f"stream {i} was flushed; call reset({i}) before feeding a new signal")
            parsed.append(arr)
        if len(kinds) > 1:
            raise AudioDTypeError("mix of numpy arrays and torch tensors (or devices) in one call; use one kind")
        is_torch, device = kinds.pop() if kinds else self._last_kind
        self._last_kind = (is_torch, device)
        sources, counts = [], []
        for i, arr in enumerate(parsed):
            k = 0
            if arr is not None and arr.shape[0]:
                _, work_t, fill, n_y, left_ready = e.ingest(
                    self._buf[i], self._buf_t[i], arr, int(self._fill[i]), int(self._n_y[i]), bool(self._left_ready[i])
                )
                self._fill[i], self._n_y[i], self._left_ready[i] = fill, n_y, left_ready
                first = int(self._emitted[i])
                ready = e.ready_frames(fill, left_ready)
                k = max(ready - first, 0)
                if k:
                    sources.append(e.frames_view(work_t, fill, first, k))
                    self._emitted[i] = ready
            counts.append(k)
        return self._compute(sources, counts, is_torch, device)

    __call__ = accept_waveform

    def _accept_block(self, block: Any) -> list[Any]:
        e = self._e
        s = self.num_streams
        if block.shape[0] != s:
            raise AudioShapeError(f"got a block of shape {tuple(block.shape)} for {s} streams; expected ({s}, n)")
        arr, is_torch, device = _as_chunk(block.reshape(-1), name="chunks")
        arr = arr.reshape(s, -1)
        n = arr.shape[1]
        if n and self._finished.any():
            raise InvalidParameterError(
                f"streams {np.flatnonzero(self._finished).tolist()} were flushed; reset them before feeding audio"
            )
        self._last_kind = (is_torch, device)
        if n == 0:
            return [e.empty(is_torch, device) for _ in range(s)]
        if n > e.cap - e.keep:
            return self.accept_waveform(list(block))
        cap, keep, buf = e.cap, e.keep, self._buf
        buf[:, cap - n - keep : cap - n] = buf[:, cap - keep :]
        buf[:, cap - n :] = arr
        self._fill += n
        self._n_y += n
        fill = self._fill
        if not self._left_ready.all():
            for i in np.flatnonzero(~self._left_ready & (self._n_y >= e.need_left)):
                e.write_left_pad(buf[i], int(fill[i]))
                self._left_ready[i] = True
        ready = np.where(self._left_ready & (fill >= e.n_fft), (fill - e.n_fft) // e.hop + 1, 0)
        counts = np.maximum(ready - self._emitted, 0)
        starts = cap - fill + self._emitted * e.hop  # row index of each stream's first new frame
        self._emitted = np.maximum(self._emitted, ready)
        if (counts == 1).all() and (starts == starts[0]).all():  # streams in step: one strided view, no gather
            st = int(starts[0])
            frames = self._buf_t[:, st : st + e.n_fft]
            return self._compute([frames], counts.tolist(), is_torch, device)
        total = int(counts.sum())
        if total == 0:
            return [e.empty(is_torch, device) for _ in range(s)]
        rows = np.repeat(np.arange(s), counts)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)  # frame index within its stream
        first = np.repeat(starts, counts) + offsets * e.hop
        frames = torch.from_numpy(buf[rows[:, None], first[:, None] + self._arange])
        return self._compute([frames], counts.tolist(), is_torch, device)

    def _compute(self, sources: list[torch.Tensor], counts: list[int], is_torch: bool, device: Any) -> list[Any]:
        e = self._e
        if not sources:
            return [e.empty(is_torch, device) for _ in counts]
        frames = sources[0] if len(sources) == 1 else torch.cat(sources)
        return e.split_output(e.frames_to_mel(frames), counts, is_torch, device)

    # --- ending streams -------------------------------------------------------------------------------------------

    def flush(self, stream: int | None = None) -> Any:
        """End one stream (returns its remaining frames) or, with None, all of them (returns a list)."""
        e = self._e
        is_torch, device = self._last_kind
        which = range(self.num_streams) if stream is None else [self._check_stream(stream)]
        sources, counts = [], []
        for i in which:
            k = 0
            if not self._finished[i]:
                self._finished[i] = True
                frames = e.flush_frames(self._buf_t[i], int(self._fill[i]), int(self._n_y[i]),
                                        int(self._emitted[i]), bool(self._left_ready[i]))
                if frames is not None:
                    k = frames.shape[0]
                    self._emitted[i] += k
                    sources.append(frames)
            counts.append(k)
        out = self._compute(sources, counts, is_torch, device)
        return out if stream is None else out[0]
