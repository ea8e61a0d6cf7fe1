"""Audio data (E3): a folder of WAV files read with ``scipy.io.wavfile`` (never torchaudio), fixed-length
waveforms, and log-mel spectrogram features computed by ``torch.stft`` and a mel filterbank of our own.

``data: {name: audio, path: DIR}`` reads every ``*.wav`` under DIR. The label comes from the file name by a
pattern (``data.label: name``, the default; the pattern ``{label}_{speaker}_{index}`` is the Free Spoken Digit
Dataset's, e.g. ``7_jackson_32.wav``) or from the sub-folder a file lies in (``data.label: folder``).
``data.groups`` names a field of the pattern (``speaker``) or ``folder``: rows of one group stay on one side of
every split. Each recording is resampled to ``data.rate`` (default: the first file's rate) with a polyphase
filter and cut or zero-padded to ``data.seconds`` (default 1).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

DEFAULT_PATTERN = "{label}_{speaker}_{index}"
"""The file-name pattern of the Free Spoken Digit Dataset; every {field} matches one run of characters but '_'."""


def read_wav(path: str | Path) -> tuple[int, np.ndarray]:
    """(rate, float32 mono waveform in [-1, 1]) of one WAV file; integer samples are scaled by their full range,
    channels are averaged. An unreadable or empty file is a one-line `ValueError` naming it."""
    from scipy.io import wavfile  # imported on use: only audio data needs it

    path = Path(path)
    try:
        rate, samples = wavfile.read(str(path))
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"data.path: '{path.name}' is not a readable WAV file ({err})") from None
    samples = np.asarray(samples)
    if samples.size == 0:
        raise ValueError(f"data.path: WAV file '{path.name}' holds no samples; expected a non-empty recording")
    if samples.dtype == np.uint8:
        wave = (samples.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(samples.dtype, np.integer):
        wave = samples.astype(np.float32) / float(2 ** (8 * samples.dtype.itemsize - 1))
    else:
        wave = samples.astype(np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    return int(rate), wave


def fix_length(wave: np.ndarray, rate: int, *, target_rate: int, length: int) -> np.ndarray:
    """`wave` resampled from `rate` to `target_rate` (polyphase, scipy.signal.resample_poly), then cut or
    zero-padded at the end to `length` samples."""
    if rate != target_rate:
        from scipy.signal import resample_poly

        g = math.gcd(int(rate), int(target_rate))
        wave = resample_poly(wave, target_rate // g, rate // g).astype(np.float32)
    out = np.zeros(length, dtype=np.float32)
    out[: min(length, len(wave))] = wave[:length]
    return out


@dataclass(frozen=True, eq=False)
class AudioClips:
    """Fixed-length waveforms float32 [N, L] at `rate`, their labels, groups and file names."""

    waves: np.ndarray
    labels: np.ndarray
    groups: np.ndarray | None
    rate: int
    files: tuple[str, ...]


def _pattern_regex(pattern: str) -> tuple[re.Pattern, list[str]]:
    fields = re.findall(r"\{(\w+)\}", pattern)
    if "label" not in fields:
        raise ValueError(f"data.pattern: expected a file-name pattern with a {{label}} field, got '{pattern}'")
    parts = re.split(r"\{\w+\}", pattern)
    regex = "".join(re.escape(p) + (f"(?P<{f}>[^_/]+?)" if i < len(fields) else "")
                    for i, (p, f) in enumerate(zip(parts, [*fields, ""])))
    return re.compile(f"^{regex}$"), fields


def read_audio_folder(path: str | Path, *, label: str = "name", pattern: str = DEFAULT_PATTERN,
                      groups: str | None = None, rate: int | None = None, seconds: float = 1.0) -> AudioClips:
    """Every ``*.wav`` under `path` (sorted), labelled by file name or sub-folder, at one rate and length."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"data.path: expected a folder of WAV files, got '{root}' (no such folder)")
    files = sorted(root.rglob("*.wav"))
    if not files:
        raise FileNotFoundError(f"data.path: no .wav files in '{root}'")
    if label not in ("name", "folder"):
        raise ValueError(f"data.label: expected 'name' (from the file name) or 'folder', got '{label}'")
    regex, fields = _pattern_regex(pattern)
    if groups not in (None, "folder") and groups not in fields:
        raise ValueError(f"data.groups: expected 'folder' or a field of the pattern '{pattern}' "
                         f"({', '.join(f for f in fields if f != 'label')}), got '{groups}'")
    labels, group_of, waves = [], [], []
    target_rate = rate
    for file in files:
        match = regex.match(file.stem) if label == "name" or groups not in (None, "folder") else None
        if (label == "name" or groups not in (None, "folder")) and match is None:
            raise ValueError(f"data.pattern: file '{file.name}' does not match the pattern '{pattern}.wav'")
        labels.append(match["label"] if label == "name" else file.parent.name)
        if groups is not None:
            group_of.append(file.parent.name if groups == "folder" else match[groups])
        file_rate, wave = read_wav(file)
        target_rate = target_rate or file_rate
        waves.append(fix_length(wave, file_rate, target_rate=target_rate, length=int(round(seconds * target_rate))))
    return AudioClips(np.stack(waves), np.asarray(labels), np.asarray(group_of) if groups else None,
                      int(target_rate), tuple(str(f.relative_to(root)) for f in files))


def mel_filterbank(n_mels: int, n_fft: int, rate: int, *, f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """Triangular filters [n_mels, n_fft // 2 + 1] equally spaced on the mel scale m = 2595 log10(1 + f / 700)
    (O'Shaughnessy 1987), each peaking at 1 (HTK-style, no area normalization)."""
    f_max = rate / 2 if f_max is None else f_max
    to_mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)  # noqa: E731
    mels = torch.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2, dtype=torch.float64)
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    freqs = torch.linspace(0, rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)


class LogMel(nn.Module):
    """Waveforms [..., L] -> log-mel features [..., n_mels * frames] (mel-major), on the waveforms' device:
    log(mel_filterbank @ |STFT|^2 + 1e-6), Hann window, hop n_fft // 2; optionally standardized by the
    training rows' per-feature mean and std (`fit_standardizer`)."""

    def __init__(self, rate: int, *, n_fft: int = 256, n_mels: int = 32) -> None:
        super().__init__()
        self.rate, self.n_fft, self.n_mels = int(rate), int(n_fft), int(n_mels)
        self.register_buffer("filters", mel_filterbank(n_mels, n_fft, rate))
        self.register_buffer("window", torch.hann_window(n_fft))
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("std", torch.zeros(0))

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """[..., L] -> [..., n_mels, frames], unstandardized."""
        if x.dim() < 1 or not x.is_floating_point():
            raise TypeError(f"LogMel: expected float waveforms [..., L], got {x.dtype} of shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        spec = torch.stft(x.reshape(-1, x.shape[-1]).float(), self.n_fft, self.n_fft // 2, window=self.window,
                          center=True, return_complex=True)
        mel = torch.matmul(self.filters, spec.abs().pow(2))
        return torch.log(mel + 1e-6).reshape(*lead, self.n_mels, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.spectrogram(x).flatten(-2)
        if self.mean.numel():
            feats = (feats - self.mean) / self.std
        return feats

    @torch.no_grad()
    def fit_standardizer(self, waves: torch.Tensor) -> "LogMel":
        """Per-feature mean and std (population std; 1 where it is below 1e-3: a constant feature) of these (training) waveforms' features."""
        self.mean = torch.zeros(0, device=waves.device)
        feats = torch.cat([self.spectrogram(chunk).flatten(-2) for chunk in waves.split(512)])
        std = feats.std(dim=0, unbiased=False)
        self.mean, self.std = feats.mean(dim=0), torch.where(std > 1e-3, std, torch.ones_like(std))
        return self


def log_mel_features(waves: np.ndarray, rate: int, *, n_fft: int = 256, n_mels: int = 32) -> np.ndarray:
    """float32 [N, n_mels * frames] unstandardized log-mel features of clean waveforms (the plain data path)."""
    front = LogMel(rate, n_fft=n_fft, n_mels=n_mels)
    with torch.no_grad():
        out = [front(torch.from_numpy(chunk)) for chunk in np.array_split(waves, max(1, len(waves) // 512))]
    return torch.cat(out).numpy()
