"""Audio augmentation (E3): each waveform operation against its definition, per-member randomness, the log-mel front end."""

from __future__ import annotations

import math

import pytest
import torch

from tamenet.augment import audio as A
from tamenet.data.audio import LogMel, mel_filterbank
from tamenet.nn import MemberRandom
from tamenet.train.text_audio_pieces import AudioAugmentBatch

RATE = 8000


def tones(*freqs: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(RATE * seconds), dtype=torch.float64) / RATE
    return torch.stack([torch.sin(2 * math.pi * f * t) for f in freqs])


def snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(A.power(clean) / A.power(noisy - clean))


def test_white_noise_hits_its_snr_within_half_a_db():
    x = tones(440, 300) * torch.tensor([[1.0], [0.1]], dtype=torch.float64)
    noisy = A.add_noise(x, torch.tensor([20.0, 5.0], dtype=torch.float64), torch.randn_like(x))
    assert torch.allclose(snr_db(x, noisy), torch.tensor([20.0, 5.0], dtype=torch.float64), atol=0.5)


def test_background_recording_mixed_in_at_its_snr():
    x = tones(440)
    bank = tones(97, 1234, seconds=0.3)  # shorter than x: read from an offset and wrapped around
    noise = A.background(bank, torch.tensor([1]), torch.tensor([0.5], dtype=torch.float64), x.shape[1])
    assert noise.shape == x.shape and torch.allclose(noise[0, :10], bank[1, 1199:1209])
    noisy = A.add_noise(x, 15.0, noise)
    assert abs(float(snr_db(x, noisy)[0]) - 15.0) < 0.5
    assert abs(float(A.dominant_frequency(noisy - x, RATE)[0]) - 1234) < 1234 * 0.02


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_time_stretch_keeps_the_pitch_and_changes_the_length_by_the_factor(factor):
    x = tones(440, 300)
    y, lengths = A.time_stretch(x, factor)
    expected = round(x.shape[1] * factor)
    assert lengths.tolist() == [expected, expected] and y.shape[1] == expected
    tail = y[:, expected - 400 : expected - 100]  # the tone lasts until the new end
    assert bool((A.power(tail) > 0.25).all())
    assert torch.allclose(A.dominant_frequency(y, RATE), torch.tensor([440.0, 300.0], dtype=torch.float64), rtol=0.02)


def test_time_stretch_with_one_factor_per_row():
    y, lengths = A.time_stretch(tones(440, 440), torch.tensor([0.5, 1.5], dtype=torch.float64))
    assert lengths.tolist() == [4000, 12000]
    assert float(y[0, 4000:].abs().max()) == 0.0  # the shorter row ends in zeros
    f = A.dominant_frequency(y[:1, :4000], RATE)
    assert abs(float(f[0]) - 440) < 440 * 0.02


@pytest.mark.parametrize("semitones", [3.0, -2.0, 7.0])
def test_pitch_shift_moves_the_frequency_by_the_semitones(semitones):
    x = tones(440, 300)
    y = A.pitch_shift(x, semitones)
    assert y.shape == x.shape
    expected = torch.tensor([440.0, 300.0], dtype=torch.float64) * 2 ** (semitones / 12)
    assert torch.allclose(A.dominant_frequency(y, RATE), expected, rtol=0.02)


def _trim_reference(row: list[float], cut: int, mode: str, at: int) -> list[float]:
    if mode == "start":
        kept = row[cut:]
    elif mode == "end":
        kept = row[: len(row) - cut]
    else:
        kept = row[:at] + row[at + cut :]
    return kept + [0.0] * (len(row) - len(kept))


@pytest.mark.parametrize("mode", ["start", "end", "middle"])
def test_trim_cuts_the_samples_its_definition_names(mode):
    x = torch.arange(1.0, 21.0).view(2, 10)
    share = torch.tensor([0.3, 0.5])
    position = torch.tensor([0.5, 0.0])
    y = A.trim(x, share, mode=mode, position=position)
    for i in range(2):
        cut = round(float(share[i]) * 10)
        at = round(float(position[i]) * (10 - cut))
        assert y[i].tolist() == _trim_reference(x[i].tolist(), cut, mode, at)


def test_warp_band_moves_a_tone_inside_the_band_and_leaves_one_outside():
    x = tones(1000, 3000)
    y = A.warp_band(x, 1000.0, 300.0, 150.0, rate=RATE)
    f = A.dominant_frequency(y, RATE)
    assert abs(float(f[0]) - 1150) < 1150 * 0.02
    assert abs(float(f[1]) - 3000) < 3000 * 0.01


def test_stretch_fragment_keeps_pitch_and_length_and_the_part_before_it():
    x = tones(440)
    y = A.stretch_fragment(x, 0.5, 0.25, 1.5)
    assert y.shape == x.shape
    assert abs(float(A.dominant_frequency(y, RATE)[0]) - 440) < 440 * 0.02
    # before the fragment the recording is (up to the vocoder's reconstruction) unchanged
    assert float((y[0, 1000:3500] - x[0, 1000:3500]).abs().max()) < 0.05


def test_an_operation_that_does_not_fire_leaves_the_row_exactly():
    x = tones(440, 300).float()
    u = torch.rand(2, A.UNIFORMS)
    s = {"pitch": torch.tensor([2.0, 2.0]), "noise": torch.tensor([10.0, 10.0])}
    y = A.augment_waves(x, s, u, rate=RATE, p=torch.tensor([0.0, 1.0]), noise=torch.randn_like(x))
    assert torch.equal(y[0], x[0]) and not torch.equal(y[1], x[1])


def test_bad_audio_input_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown audio augmentation 'echo' \(valid: trim, fragment, stretch"):
        A.augment_waves(torch.zeros(1, 100), {"echo": torch.ones(1)}, torch.rand(1, A.UNIFORMS), rate=RATE, p=torch.ones(1))
    with pytest.raises(ValueError, match=r"expected waveforms of shape \[N, L\] \(audio data\), got shape \(2, 1, 8, 8\)"):
        A.pitch_shift(torch.zeros(2, 1, 8, 8), 2.0)
    with pytest.raises(TypeError, match="expected a float tensor"):
        A.trim(torch.zeros(2, 10, dtype=torch.long), 0.1)


class _FakeTrainer:
    def __init__(self, seeds, hyper=None):
        self.members = len(seeds)
        self.model = type("M", (), {"random": MemberRandom(seeds)})()
        self.hyper = hyper or {}
        self.device = torch.device("cpu")


def test_a_member_augments_as_it_would_alone():
    x = tones(440, 300, 500, seconds=0.25).float()
    strengths = {"p": [0.8, 0.8, 0.0], "pitch": [2.0, 0.0, 2.0], "trim": [0.2, 0.1, 0.0], "noise": [10.0, 30.0, 5.0]}
    pair = AudioAugmentBatch(strengths, rate=RATE)
    both = _FakeTrainer([3, 5, 7])
    assert pair.begin_epoch(both)
    out = pair(both, x)
    assert torch.equal(out[2], x)  # p = 0: this member's rows are the originals
    alone = AudioAugmentBatch({k: [v[1]] for k, v in strengths.items()}, rate=RATE)
    single = _FakeTrainer([5])
    alone.begin_epoch(single)
    assert torch.equal(out[1], alone(single, x)[0])
    assert not torch.equal(out[0], out[1])


def test_strengths_come_from_the_loops_hyper_parameters_when_the_recipe_has_them():
    piece = AudioAugmentBatch({"p": [1.0], "noise": [0.0]}, rate=RATE)
    trainer = _FakeTrainer([0], hyper={"audio_noise": torch.tensor([10.0])})
    assert piece.begin_epoch(trainer)  # the recipe's 10 dB, not the piece's 0 (off)
    x = tones(440, seconds=0.25).float()
    assert abs(float(snr_db(x, piece(trainer, x)[0])[0]) - 10.0) < 0.5


def test_mel_filterbank_triangles_peak_at_one_on_increasing_centres():
    fb = mel_filterbank(16, 256, RATE)
    assert fb.shape == (16, 129)
    assert torch.allclose(fb.max(dim=1).values, torch.ones(16), atol=0.2)
    assert bool((fb.argmax(dim=1).diff() > 0).all())


def test_log_mel_of_a_tone_peaks_in_the_band_of_its_frequency():
    front = LogMel(RATE, n_fft=256, n_mels=32)
    spec = front.spectrogram(tones(1000).float())
    band = int(spec[0].mean(dim=1).argmax())
    centres = mel_filterbank(32, 256, RATE).argmax(dim=1) * RATE / 256
    assert abs(float(centres[band]) - 1000) < 150
    front.fit_standardizer(tones(440, 1000, 2000).float())
    feats = front(tones(440, 1000, 2000).float())
    assert torch.allclose(feats.mean(dim=0), torch.zeros(feats.shape[1]), atol=1e-3)


def test_preview_audio_gives_the_original_and_augmented_spectrograms():
    x = tones(440, 1000, seconds=0.25).float()
    out = A.preview_audio(x, RATE, {"p": 1.0, "pitch": 4.0}, copies=2)
    assert out.shape[:3] == (2, 3, 32)
    assert (out[:, 0] == LogMel(RATE).spectrogram(x).numpy()).all()
    assert not (out[:, 1] == out[:, 0]).all()
