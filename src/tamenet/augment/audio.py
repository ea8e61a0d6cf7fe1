"""Waveform augmentation (E3): batched operations on torch tensors ``[N, L]``, each with its parameters per row.

Every operation is a pure function of the waveforms and one parameter tensor per row (a factor, a shift, a
position), so the same numbers give the same output on any device, and a batch needs no per-row Python loop.
`AudioAugment` draws those parameters from each member's own random stream (`tamenet.nn.MemberRandom`), so member m
of a population augments exactly as a separate run with its seed would.

* trimming at the start, the end or the middle (`trim`): samples cut out, the rest moved up, zeros after;
* time stretch keeping the pitch (`time_stretch`) and pitch shift keeping the length (`pitch_shift`), both by a
  phase vocoder on ``torch.stft`` (Flanagan & Golden 1966; Laroche & Dolson 1999): the magnitudes are read at
  fractional frame positions and the phase accumulates each bin's measured phase advance;
* time stretch of one fragment keeping the pitch (`stretch_fragment`): the same vocoder with a piecewise-linear
  time map (rate 1 outside the fragment, 1 / factor inside);
* a local frequency change (`warp_band`): the bins of one band moved by a piecewise-linear map of the frequency
  axis, so the band's centre moves by ``shift`` bins and everything outside the band stays;
* additive noise at a signal-to-noise ratio in dB (`add_noise`): white Gaussian noise or a real background
  recording, scaled so that ``10 log10(P_signal / P_noise) = snr_db``.
"""

from __future__ import annotations

import math

import torch

N_FFT = 256
"""STFT size of the vocoder (32 ms at 8 kHz); hop N_FFT // 4."""


def _check_waves(x: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{what}: expected a float tensor of waveforms [N, L], got {type(x).__name__}"
                        + (f" of dtype {x.dtype}" if isinstance(x, torch.Tensor) else ""))
    if x.dim() != 2:
        raise ValueError(f"{what}: expected waveforms of shape [N, L] (audio data), got shape {tuple(x.shape)}")
    return x


def _per_row(value, n: int, what: str, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"{what}: expected one value per waveform ({n}), got shape {tuple(t.shape)}")
    return t


def _window(n_fft: int, x: torch.Tensor) -> torch.Tensor:
    return torch.hann_window(n_fft, dtype=x.dtype, device=x.device)


def stft(x: torch.Tensor, n_fft: int = N_FFT) -> torch.Tensor:
    """Complex spectrogram [N, n_fft // 2 + 1, T] (Hann window, hop n_fft // 4, centred frames)."""
    return torch.stft(x, n_fft, n_fft // 4, window=_window(n_fft, x), center=True, return_complex=True)


def istft(spec: torch.Tensor, length: int, n_fft: int = N_FFT) -> torch.Tensor:
    """The waveforms [N, length] of a complex spectrogram made by `stft`."""
    window = torch.hann_window(n_fft, dtype=spec.real.dtype, device=spec.device)
    return torch.istft(spec, n_fft, n_fft // 4, window=window, center=True, length=length)


def vocode(spec: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Phase vocoder: the spectrogram read at fractional frame `positions` [N, K] (frames of `spec` [N, F, T]).

    Magnitude: linear interpolation between frames lo = floor(p) and lo + 1. Phase: frame lo's phase plus
    (k - lo) times the bin's phase advance from lo to lo + 1, so a steady partial keeps its frequency whatever
    the reading rate. Positions past the last frame give silence.
    """
    n, f, t = spec.shape
    k = positions.shape[1]
    valid = (positions <= t - 1) & (positions >= 0)
    pos = positions.clamp(0, max(t - 1, 0))
    lo = pos.floor().long().clamp(max=max(t - 2, 0))
    frac = (pos - lo.to(pos.dtype)).clamp(0, 1).unsqueeze(1)
    hi = (lo + 1).clamp(max=t - 1)
    mag, ang = spec.abs(), torch.angle(spec)  # once per input frame; the reads below are real gathers
    at_lo, at_hi = lo.unsqueeze(1).expand(n, f, k), hi.unsqueeze(1).expand(n, f, k)
    magnitude = (1 - frac) * torch.gather(mag, 2, at_lo) + frac * torch.gather(mag, 2, at_hi)
    phase_lo = torch.gather(ang, 2, at_lo)
    advance = torch.gather(ang, 2, at_hi) - phase_lo
    # Output frame k takes the phase of the frame it reads, advanced by (k - lo) hops at that bin's measured rate:
    # consecutive output frames then differ by one hop's advance (horizontal coherence), and the bins keep the
    # relative phases of the frame read (vertical coherence). A running sum from frame 0 would instead keep frame
    # 0's pattern, which a centred STFT fills with reflected padding (a steady tone then cancels itself).
    k_minus_lo = (torch.arange(k, device=spec.device).unsqueeze(0) - lo).unsqueeze(1).to(advance.dtype)
    phase = phase_lo + k_minus_lo * advance
    magnitude = magnitude * valid.unsqueeze(1).to(magnitude.dtype)
    return torch.polar(magnitude, phase)


def time_stretch(x: torch.Tensor, factor, *, n_fft: int = N_FFT) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms made `factor` times longer (factor > 1 slower, < 1 faster) at the same pitch.

    Returns (waves [N, L_max], lengths [N]): row i holds round(L * factor_i) samples, then zeros.
    """
    x = _check_waves(x, "time_stretch")
    n, length = x.shape
    factor = _per_row(factor, n, "time_stretch factor", x)
    if not bool((factor > 0).all()):
        raise ValueError(f"time_stretch: expected factors > 0, got {factor.min().item():g}")
    spec = stft(x, n_fft)
    frames = spec.shape[2]
    k = int(math.ceil(frames * float(factor.max())))
    positions = torch.arange(k, dtype=x.dtype, device=x.device).unsqueeze(0) / factor.unsqueeze(1)
    lengths = torch.round(length * factor).long()
    out = istft(vocode(spec, positions), int(lengths.max()), n_fft)
    keep = torch.arange(out.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
    return out * keep, lengths


def resample_rows(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x [N, L] read at fractional sample `positions` [N, L'] by linear interpolation (zero outside)."""
    length = x.shape[1]
    valid = (positions >= 0) & (positions <= length - 1)
    pos = positions.clamp(0, length - 1)
    lo = pos.floor().long().clamp(max=length - 2)
    frac = pos - lo.to(pos.dtype)
    out = (1 - frac) * torch.gather(x, 1, lo) + frac * torch.gather(x, 1, lo + 1)
    return out * valid.to(out.dtype)


def pitch_shift(x: torch.Tensor, semitones, *, n_fft: int = N_FFT) -> torch.Tensor:
    """Every frequency times 2^(semitones / 12), same length: a vocoder stretch by that ratio, then resampling back."""
    x = _check_waves(x, "pitch_shift")
    n, length = x.shape
    ratio = 2.0 ** (_per_row(semitones, n, "pitch_shift semitones", x) / 12.0)
    stretched, _ = time_stretch(x, ratio, n_fft=n_fft)
    positions = torch.arange(length, dtype=x.dtype, device=x.device).unsqueeze(0) * ratio.unsqueeze(1)
    return resample_rows(stretched, positions)


def stretch_fragment(x: torch.Tensor, start, width, factor, *, n_fft: int = N_FFT) -> torch.Tensor:
    """The fragment [start, start + width) (shares of the length) made `factor` times longer at the same pitch;
    the rest of the recording is unchanged and the result is cut or zero-padded back to L samples."""
    x = _check_waves(x, "stretch_fragment")
    n, length = x.shape
    start = _per_row(start, n, "stretch_fragment start", x).clamp(0, 1)
    width = _per_row(width, n, "stretch_fragment width", x).clamp(0, 1)
    factor = _per_row(factor, n, "stretch_fragment factor", x)
    if not bool((factor > 0).all()):
        raise ValueError(f"stretch_fragment: expected factors > 0, got {factor.min().item():g}")
    spec = stft(x, n_fft)
    frames = spec.shape[2]
    a = (start * (frames - 1)).unsqueeze(1)
    b = ((start + width).clamp(max=1) * (frames - 1)).unsqueeze(1)
    r = factor.unsqueeze(1)
    k = torch.arange(frames * max(1.0, float(factor.max())) + 1, dtype=x.dtype, device=x.device).unsqueeze(0)
    end_out = a + (b - a) * r  # where the stretched fragment ends in output frames
    positions = torch.where(k < a, k, torch.where(k < end_out, a + (k - a) / r, b + (k - end_out)))
    return istft(vocode(spec, positions), int(k.shape[1] - 1) * (n_fft // 4), n_fft)[:, :length].contiguous()


def warp_band(x: torch.Tensor, centre, width, shift, *, rate: float, n_fft: int = N_FFT) -> torch.Tensor:
    """A local frequency change: inside the band centre +- width (Hz) the frequency axis is warped piecewise-linearly
    so that the component at `centre` moves to `centre + shift` (|shift| < width); outside the band nothing changes."""
    x = _check_waves(x, "warp_band")
    n, length = x.shape
    spec = stft(x, n_fft)
    bins = spec.shape[1]
    hz = rate / n_fft  # Hz per bin
    c = (_per_row(centre, n, "warp_band centre", x) / hz).unsqueeze(1)
    w = (_per_row(width, n, "warp_band width", x) / hz).clamp(min=1.0).unsqueeze(1)
    d = (_per_row(shift, n, "warp_band shift", x) / hz).unsqueeze(1)
    d = torch.maximum(torch.minimum(d, 0.9 * w), -0.9 * w)
    f = torch.arange(bins, dtype=x.dtype, device=x.device).unsqueeze(0)
    lower = c - w + (f - (c - w)) * w / (w + d)  # output [c - w, c + d] reads source [c - w, c]
    upper = c + (f - (c + d)) * w / (w - d)  # output [c + d, c + w] reads source [c, c + w]
    source = torch.where((f >= c - w) & (f <= c + w), torch.where(f <= c + d, lower, upper), f)
    source = source.clamp(0, bins - 1)
    lo = source.floor().long().clamp(max=bins - 2)
    frac = (source - lo.to(x.dtype)).unsqueeze(2)
    t = spec.shape[2]
    a = torch.gather(spec, 1, lo.unsqueeze(2).expand(n, bins, t))
    b = torch.gather(spec, 1, (lo + 1).unsqueeze(2).expand(n, bins, t))
    moved = (1 - frac) * a + frac * b
    # a component read from bin `source` and written at bin f must turn at f's rate: its phase gains
    # 2 pi (f - source) hop / n_fft per frame (else the resynthesis keeps the old frequency)
    frame = torch.arange(t, dtype=x.dtype, device=x.device).view(1, 1, t)
    turn = (2 * math.pi * (n_fft // 4) / n_fft) * (f - source).unsqueeze(2) * frame
    return istft(moved * torch.polar(torch.ones_like(turn), turn), length, n_fft)


TRIM_MODES = {"start": 0, "end": 1, "middle": 2}
"""`trim` modes: cut at the start (the rest moves up), at the end, or a segment from the middle (the gap closes)."""


def trim(x: torch.Tensor, share, *, mode: str = "start", position=0.5) -> torch.Tensor:
    """Cut ``round(share * L)`` samples at the start, the end or the middle (segment starting at
    ``position * (L - cut)``); what is left moves up and the row ends in zeros, so its length stays L."""
    x = _check_waves(x, "trim")
    if mode not in TRIM_MODES:
        raise ValueError(f"trim: unknown mode '{mode}' (valid: {', '.join(TRIM_MODES)})")
    n, length = x.shape
    cut = torch.round(_per_row(share, n, "trim share", x).clamp(0, 1) * length).long().unsqueeze(1)
    j = torch.arange(length, device=x.device).unsqueeze(0)
    if mode == "start":
        src = j + cut
    elif mode == "end":
        src = torch.where(j < length - cut, j, torch.full_like(j, length))
    else:
        at = torch.round(_per_row(position, n, "trim position", x).clamp(0, 1).unsqueeze(1) * (length - cut)).long()
        src = torch.where(j < at, j, j + cut)
    valid = src < length
    return torch.gather(x, 1, src.clamp(max=length - 1)) * valid.to(x.dtype)


def power(x: torch.Tensor) -> torch.Tensor:
    """Mean square of each row [N]."""
    return x.pow(2).mean(dim=1)


def add_noise(x: torch.Tensor, snr_db, noise: torch.Tensor) -> torch.Tensor:
    """x + s * noise with s chosen per row so that 10 log10(power(x) / power(s * noise)) = snr_db.

    `noise` [N, L]: white Gaussian noise for random noise, or a background recording for a real one (`background`).
    A silent row stays silent; a silent noise row adds nothing.
    """
    x = _check_waves(x, "add_noise")
    if noise.shape != x.shape:
        raise ValueError(f"add_noise: expected noise of the waveforms' shape {tuple(x.shape)}, got {tuple(noise.shape)}")
    snr = _per_row(snr_db, x.shape[0], "add_noise snr_db", x)
    p_noise = power(noise)
    scale = torch.sqrt(power(x) / (p_noise.clamp(min=1e-20) * 10.0 ** (snr / 10.0))) * (p_noise > 0)
    return x + scale.unsqueeze(1) * noise


def background(bank: torch.Tensor, index: torch.Tensor, offset: torch.Tensor, length: int) -> torch.Tensor:
    """Rows of background recordings: bank [R, Lb] row index[i], read from share offset[i] of it, repeated
    (wrapping around) to `length` samples."""
    if bank.dim() != 2 or bank.shape[0] == 0:
        raise ValueError(f"background: expected recordings [R, L], got shape {tuple(bank.shape)}")
    lb = bank.shape[1]
    start = (offset.clamp(0, 1) * (lb - 1)).long().unsqueeze(1)
    j = (start + torch.arange(length, device=bank.device).unsqueeze(0)) % lb
    return bank[index.long().unsqueeze(1), j]


def dominant_frequency(x: torch.Tensor, rate: float) -> torch.Tensor:
    """The frequency (Hz) of each row's largest spectral peak, refined by parabolic interpolation of log magnitudes."""
    spectrum = torch.fft.rfft(x * torch.hann_window(x.shape[1], dtype=x.dtype, device=x.device), dim=1).abs()
    k = spectrum[:, 1:-1].argmax(dim=1) + 1
    lg = torch.log(spectrum + 1e-12)
    left, mid, right = (torch.gather(lg, 1, (k + s).unsqueeze(1)).squeeze(1) for s in (-1, 0, 1))
    delta = 0.5 * (left - right) / (left - 2 * mid + right)
    return (k.to(x.dtype) + delta) * rate / x.shape[1]


# --- a recipe's audio augmentation, batched --------------------------------------------------------------------

AUDIO_OPS: dict[str, str] = {
    "trim": "cut up to this share of the length (at the start, the end or the middle: trim_mode)",
    "fragment": "stretch a quarter-length fragment by a factor in [1 - s, 1 + s], pitch kept",
    "stretch": "stretch the whole recording by a factor in [1 - s, 1 + s], pitch kept (cut or padded back)",
    "pitch": "shift the pitch by up to s semitones either way, length kept",
    "warp": "move the centre of a frequency band (random centre, width 2 s) by up to s Hz either way",
    "background": "mix in a background recording at this SNR in dB (0: off)",
    "noise": "add white Gaussian noise at this SNR in dB (0: off)",
}
"""Audio operations by recipe name, in the order they are applied; each fires on a row with probability p."""

UNIFORMS = 16
"""Random numbers drawn per row for one batch (two per operation, the rest spare)."""


def _fits(y: torch.Tensor, length: int) -> torch.Tensor:
    return y[:, :length] if y.shape[1] >= length else torch.nn.functional.pad(y, (0, length - y.shape[1]))


def augment_waves(x: torch.Tensor, strengths: dict[str, torch.Tensor], u: torch.Tensor, *, rate: float,
                  p: torch.Tensor, trim_mode: str = "any", noise: torch.Tensor | None = None,
                  bank: torch.Tensor | None = None, active: tuple[str, ...] | None = None) -> torch.Tensor:
    """Waveforms x [N, L] through the operations in `AUDIO_OPS` order, row i with strengths[name][i] and firing
    when u[i, 2 j] < p[i] (operation j); u [N, UNIFORMS] in [0, 1) decides every random choice, so the output is a
    pure function of its inputs. A row on which an operation does not fire keeps its waveform exactly.
    `active`: the operations to compute (default: those with a non-zero strength for some row, read once here);
    `noise` [N, L]: N(0, 1) draws for ``noise``; `bank` [R, Lb]: background recordings for ``background``."""
    x = _check_waves(x, "augment_waves")
    unknown = [k for k in strengths if k not in AUDIO_OPS]
    if unknown:
        raise ValueError(f"unknown audio augmentation '{unknown[0]}' (valid: {', '.join(AUDIO_OPS)})")
    if trim_mode not in (*TRIM_MODES, "any"):
        raise ValueError(f"audio trim_mode: unknown value '{trim_mode}' (valid: any, {', '.join(TRIM_MODES)})")
    n, length = x.shape
    if active is None:
        active = tuple(k for k, v in strengths.items() if bool((v > 0).any()))
    for j, name in enumerate(AUDIO_OPS):
        if name not in active:
            continue
        s = strengths[name].to(x.dtype)
        fire = (u[:, 2 * j] < p) & (s > 0)
        v = u[:, 2 * j + 1].to(x.dtype)
        if name == "trim":
            if trim_mode == "any":
                mode_of = (u[:, 14] * 3).long().clamp(max=2)
                cuts = [trim(x, s * v, mode=m, position=u[:, 15]) for m in TRIM_MODES]
                y = torch.where((mode_of == 0).unsqueeze(1), cuts[0], torch.where((mode_of == 1).unsqueeze(1), cuts[1], cuts[2]))
            else:
                y = trim(x, s * v, mode=trim_mode, position=u[:, 15])
        elif name == "fragment":
            y = stretch_fragment(x, 0.75 * u[:, 15].to(x.dtype), 0.25, 1 + s * (2 * v - 1))
        elif name == "stretch":
            y = _fits(time_stretch(x, 1 + s * (2 * v - 1))[0], length)
        elif name == "pitch":
            y = pitch_shift(x, s * (2 * v - 1))
        elif name == "warp":
            centre = 2 * s + (rate / 2 - 4 * s).clamp(min=0) * u[:, 14].to(x.dtype)
            y = warp_band(x, centre, (2 * s).clamp(min=1.0), s * (2 * v - 1), rate=rate)
        elif name == "background":
            if bank is None:
                raise ValueError("audio background: needs background recordings (background_path), got none")
            index = (u[:, 14] * bank.shape[0]).long().clamp(max=bank.shape[0] - 1)
            y = add_noise(x, s, background(bank.to(x.device, x.dtype), index, u[:, 15].to(x.dtype), length))
        else:
            if noise is None:
                raise ValueError("audio noise: needs the N(0, 1) draws (noise=...), got none")
            y = add_noise(x, s, noise.to(x.dtype))
        x = torch.where(fire.unsqueeze(1), y, x)
    return x


def preview_audio(waves, rate: int, strengths=None, *, copies: int = 3, seed: int = 0, trim_mode: str = "any",
                  bank: torch.Tensor | None = None, n_fft: int = 256, n_mels: int = 32):
    """For `tamenet preview`: float32 log-mel spectrograms [N, 1 + copies, n_mels, frames] of each waveform
    (index 0) and `copies` augmented versions of it (steps 0..copies-1 of a member seeded `seed`).

    `strengths`: op (and ``p``) -> one number, or an `AudioAugmentConfig` (its first member's numbers)."""
    import numpy as np

    from ..data.audio import LogMel
    from ..nn import MemberRandom

    x = torch.as_tensor(np.asarray(waves), dtype=torch.float32)
    x = _check_waves(x.unsqueeze(0) if x.dim() == 1 else x, "preview_audio")
    if strengths is not None and not isinstance(strengths, dict):
        trim_mode = getattr(strengths, "trim_mode", trim_mode)
        strengths = {k: getattr(strengths, k) for k in ("p", *AUDIO_OPS)}
    values = {k: (v[0] if isinstance(v, (list, tuple)) else v) for k, v in (strengths or {}).items()}
    n, length = x.shape
    p = torch.full((n,), float(values.pop("p", 0.5)))
    per_row = {k: torch.full((n,), float(v)) for k, v in values.items()}
    front = LogMel(rate, n_fft=n_fft, n_mels=n_mels)
    random = MemberRandom([seed])
    versions = [front.spectrogram(x)]
    for step in range(copies):
        random.step = step
        u = random.uniform(7_200, (n, UNIFORMS))[0]
        noise = random.normal(7_201, (n, length))[0]
        versions.append(front.spectrogram(augment_waves(x, per_row, u, rate=rate, p=p, trim_mode=trim_mode,
                                                        noise=noise, bank=bank)))
    return torch.stack(versions, dim=1).numpy()
