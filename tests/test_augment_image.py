"""Each image transform and each mixing rule against its definition (E1), and the recipe's bad inputs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from tamenet.augment import geometry
from tamenet.augment.image import IMAGE_OPS, Draws, ImageAugment, augment_batch, resample
from tamenet.augment.mix import Mix, beta
from tamenet.config import Recipe, RecipeError, parse
from tamenet.nn import MemberRandom
from tamenet.train.hyper import member_hyper
from tamenet.train.losses import SoftTargets, member_loss


def run_ops(x: torch.Tensor, seed: int = 0, p: float = 1.0, **strengths: float) -> torch.Tensor:
    """augment_batch on images x [N, C, H, W] as one member with these strengths."""
    n = x.shape[0]
    random = MemberRandom([seed])
    random.step = 3
    strength = {k: torch.full((n,), float(v)) for k, v in strengths.items()}
    out, _ = augment_batch(x, strength, torch.full((n,), p), Draws(random, n, x.device), list(strengths))
    return out


def fake_trainer(augment: dict, *, seeds=(0,), task="classification", shape=(1, 8, 8)):
    recipe = parse(Recipe, {"augment": augment, "seed": list(seeds)})
    random = MemberRandom(list(seeds))
    random.step = 5
    return SimpleNamespace(members=len(seeds), hyper=member_hyper(recipe), data=SimpleNamespace(task=task),
                           model=SimpleNamespace(random=random, image_shape=shape), recipe=recipe)


def test_flips_are_flips_and_fire_with_their_probability():
    x = torch.randn(400, 2, 5, 6)
    assert torch.equal(run_ops(x, hflip=1.0), x.flip(-1))
    assert torch.equal(run_ops(x, vflip=1.0), x.flip(-2))
    half = run_ops(x, hflip=0.5)
    flipped = (half == x.flip(-1)).flatten(1).all(1)
    assert torch.equal(flipped | (half == x).flatten(1).all(1), torch.ones(400, dtype=torch.bool))
    assert 0.4 < flipped.float().mean() < 0.6


def test_a_quarter_turn_is_torch_rot90_and_whole_pixel_shifts_are_rolls():
    x = torch.randn(3, 2, 7, 7)
    torch.testing.assert_close(geometry.rotate(x, 90.0), torch.rot90(x, 1, (-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(geometry.rotate(x, -90.0), torch.rot90(x, -1, (-2, -1)), atol=1e-5, rtol=0)
    n = x.shape[0]
    matrices = geometry.affine_matrices(7, 7, angle=torch.zeros(n), scale=torch.ones(n),
                                        shift=torch.tensor([[2.0, -1.0]]).expand(n, 2))
    moved = geometry.warp(x, matrices)
    want = torch.zeros_like(x)
    want[..., :6, 2:] = x[..., 1:, :5]  # out(p + (2, -1)) = x(p), zeros where nothing maps
    torch.testing.assert_close(moved, want, atol=1e-5, rtol=0)


def test_random_rotation_stays_within_its_range():
    x = torch.zeros(200, 1, 9, 9)
    x[:, 0, 4, 8] = 1.0  # one bright pixel on the right edge of the centre row
    out = run_ops(x, rotate=30.0)
    ys, xs = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    w = out[:, 0].clamp_min(0)
    cy, cx = (w * ys).sum((1, 2)) / w.sum((1, 2)), (w * xs).sum((1, 2)) / w.sum((1, 2))
    angle = torch.rad2deg(torch.atan2(-(cy - 4), cx - 4))  # counter-clockwise with y down
    assert angle.abs().max() <= 31.0 and angle.abs().max() > 20.0 and angle.std() > 10.0


def test_a_centred_fragment_of_half_the_side_is_a_zoom_of_two():
    x = torch.randn(2, 1, 9, 9)
    n, zero = 2, torch.zeros(2)
    centre = torch.full((n, 2), 4.0)
    crop = geometry.affine_matrices(9, 9, angle=zero, scale=torch.ones(n), shift=torch.zeros(n, 2),
                                    fragment=torch.full((n,), 0.5), fragment_centre=centre)
    zoom = geometry.affine_matrices(9, 9, angle=zero, scale=torch.full((n,), 2.0), shift=torch.zeros(n, 2))
    torch.testing.assert_close(geometry.warp(x, crop), geometry.warp(x, zoom), atol=1e-5, rtol=0)
    torch.testing.assert_close(geometry.warp(x, zoom)[..., 4, 4], x[..., 4, 4])  # the centre stays put


def test_brightness_adds_one_constant_per_image_within_its_range():
    x = torch.randn(300, 3, 4, 4)
    delta = (run_ops(x, brightness=0.3) - x).flatten(1)
    torch.testing.assert_close(delta, delta[:, :1].expand_as(delta), atol=1e-6, rtol=0)
    assert delta.abs().max() <= 0.3 and delta[:, 0].std() > 0.1


def test_contrast_keeps_the_mean_and_scales_deviations_by_one_factor():
    x = torch.randn(300, 1, 5, 5)
    out = run_ops(x, contrast=0.5)
    mean = x.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(out.mean((1, 2, 3), keepdim=True), mean, atol=1e-5, rtol=0)
    factor = ((out - mean) / (x - mean)).flatten(1)
    torch.testing.assert_close(factor, factor[:, :1].expand_as(factor), atol=1e-3, rtol=1e-3)
    assert factor.min() >= 0.5 - 1e-4 and factor.max() <= 1.5 + 1e-4


def test_hue_turn_keeps_each_pixels_max_and_min_channel_and_saturation_keeps_grey():
    x = torch.rand(50, 3, 4, 4)
    out = run_ops(x, hue=0.5)
    torch.testing.assert_close(out.amax(1), x.amax(1), atol=1e-5, rtol=0)  # HSV value
    torch.testing.assert_close(out.amin(1), x.amin(1), atol=1e-5, rtol=0)  # value x (1 - saturation)
    assert (out - x).abs().max() > 0.1
    grey = torch.rand(20, 1, 4, 4).expand(20, 3, 4, 4)
    torch.testing.assert_close(run_ops(grey, saturation=0.8), grey, atol=1e-5, rtol=0)


def test_blur_smooths_and_sharpness_sharpens_and_noise_has_its_std():
    x = torch.randn(64, 1, 8, 8)
    lap = lambda t: (t[..., 1:, :] - t[..., :-1, :]).square().mean()  # noqa: E731
    assert lap(run_ops(x, blur=1.5)) < 0.7 * lap(x)
    assert lap(run_ops(x, sharpness=1.0)) > lap(x)
    big = torch.zeros(20, 3, 16, 16)
    assert abs(float(run_ops(big, noise=0.25).std()) - 0.25) < 0.01


def test_resolution_is_block_means_upsampled_and_elastic_moves_by_its_rms():
    x = torch.randn(2, 1, 8, 8)
    blocks = F.avg_pool2d(x, 2)
    torch.testing.assert_close(resample(x, 0.5), F.interpolate(blocks, size=(8, 8), mode="bilinear"))
    field = geometry.elastic_field(torch.randn(5, 2, 16, 16), torch.full((5,), 1.5), sigma=2.0)
    rms = field.square().sum(1).mean((1, 2)).sqrt()
    torch.testing.assert_close(rms, torch.full((5,), 1.5), atol=1e-4, rtol=0)
    torch.testing.assert_close(geometry.displace(x, torch.zeros(2, 2, 8, 8)), x, atol=1e-5, rtol=0)


def test_channel_shuffle_permutes_channels_glare_only_brightens_erase_blanks_a_box():
    x = torch.randn(100, 3, 6, 6)
    out = run_ops(x, channel_shuffle=1.0)
    assert torch.equal(out.sort(1).values, x.sort(1).values)
    assert not torch.equal(out, x)
    glare = run_ops(x, glare=2.0) - x
    assert glare.min() >= 0 and glare.max() <= 2.0 and glare.max() > 0.5
    ones = torch.ones(300, 1, 10, 10)
    zeroed = (run_ops(ones, erase=0.3) == 0)[:, 0]
    share = zeroed.float().mean((1, 2))
    assert share.max() <= 0.3 + 0.06 and share.min() > 0.0
    rows, cols = zeroed.any(2), zeroed.any(1)  # a box: its pixels are exactly its rows x its columns
    assert torch.equal(zeroed, rows.unsqueeze(2) & cols.unsqueeze(1))


def test_share_p_is_how_often_a_transform_fires():
    x = torch.randn(2000, 1, 4, 4)
    changed = ((run_ops(x, p=0.3, brightness=0.5) - x).abs().flatten(1).amax(1) > 0)
    assert abs(float(changed.float().mean()) - 0.3) < 0.04


def test_each_member_uses_its_own_strength_and_a_zero_member_is_untouched():
    trainer = fake_trainer({"image": {"rotate": [0.0, 25.0], "erase": [0.0, 0.3]}}, seeds=(0, 0))
    piece = ImageAugment()
    assert piece.begin_epoch(trainer)
    x = torch.randn(16, 64)
    out, _ = piece(trainer, x, torch.zeros(16, dtype=torch.long))
    assert torch.equal(out[0], x) and not torch.allclose(out[1], x)


def test_mixup_labels_are_the_same_convex_mix_as_the_inputs():
    trainer = fake_trainer({"mix": {"kind": "mixup", "alpha": [0.4, 2.0]}}, seeds=(0, 1))
    y = torch.arange(32) % 4
    x = F.one_hot(y, 4).float()  # inputs equal to their one-hot labels: the mixes must agree
    piece = Mix("mixup")
    assert piece.begin_epoch(trainer)
    mixed_x, labels = piece(trainer, x, y)
    torch.testing.assert_close(mixed_x, labels.soft(4))
    assert (labels.lam < 0.999).float().mean() > 0.9  # p = 1: nearly every image mixed
    out = torch.randn(2, 32, 4)
    soft_loss = SoftTargets()(trainer, out, labels)
    lam = labels.lam
    ce = lambda t: F.cross_entropy(out.reshape(-1, 4), t.reshape(-1), reduction="none").view(2, 32)  # noqa: E731
    torch.testing.assert_close(soft_loss, (lam * ce(labels.own) + (1 - lam) * ce(labels.other)).mean(1))
    unmixed = Mix("mixup")
    trainer.hyper["mix_p"] = torch.zeros(2)  # p = 0: the labels stay one-hot and the loss is plain cross-entropy
    _, plain = unmixed(trainer, x, y)
    torch.testing.assert_close(SoftTargets()(trainer, out, plain), member_loss(out, y, "classification"))


def test_cutmix_label_share_is_the_pasted_area():
    trainer = fake_trainer({"mix": {"kind": "cutmix", "alpha": 1.0}}, seeds=(3,), shape=(1, 8, 8))
    y = torch.arange(40) % 10
    x = y.float().view(-1, 1).expand(40, 64).clone()  # each image is filled with its class number
    piece = Mix("cutmix")
    piece.begin_epoch(trainer)
    mixed_x, labels = piece(trainer, x, y)
    share_own = (mixed_x == y.float().view(1, -1, 1)).float().mean(-1)
    pasted = labels.own != labels.other
    torch.testing.assert_close(labels.lam[pasted], share_own[pasted])
    torch.testing.assert_close(mixed_x.mean(-1), labels.lam * labels.own + (1 - labels.lam) * labels.other)


def test_beta_draws_have_the_beta_mean_and_variance_per_member():
    random = MemberRandom([0, 1])
    lam = beta(random, 4_010, torch.tensor([0.2, 2.0]), (20_000,), device="cpu")
    for m, a in enumerate((0.2, 2.0)):
        assert abs(float(lam[m].mean()) - 0.5) < 0.01
        assert abs(float(lam[m].var()) - 1 / (4 * (2 * a + 1))) < 0.01
    alone = beta(MemberRandom([1]), 4_010, torch.tensor([2.0]), (20_000,), device="cpu")
    assert torch.equal(alone[0], lam[1])


def test_bad_recipes_are_refused_with_one_line():
    with pytest.raises(RecipeError, match=r"unknown recipe key 'augment.image.rotat'.*rotate.*valid keys: p, hflip"):
        parse(Recipe, {"augment": {"image": {"rotat": 10}}})
    with pytest.raises(RecipeError, match=r"augment.image.rotate: expected a value <= 180.0, got 200"):
        parse(Recipe, {"augment": {"image": {"rotate": 200}}})
    with pytest.raises(RecipeError, match=r"augment.mix.kind: unknown value 'mixmax' \(valid: none, mixup, cutmix\)"):
        parse(Recipe, {"augment": {"mix": {"kind": "mixmax"}}})
    for op in [name for name, info in IMAGE_OPS.items() if info.colour]:
        trainer = fake_trainer({"image": {op: 0.2}})
        with pytest.raises(RecipeError, match=rf"augment.image.{op}: a colour transform needs 3-channel"):
            ImageAugment().begin_epoch(trainer)
    flat = fake_trainer({"image": {"rotate": 5}}, shape=None)
    flat.model.input_shape = (1, 40)
    with pytest.raises(RecipeError, match=r"expected rows that are images \[C, H, W\].*got \[1, 40\]"):
        ImageAugment().begin_epoch(flat)


def test_preview_draws_a_grid_png_and_refuses_colour_ops_on_grey_digits_in_one_line(tmp_path, capsys):
    from tamenet.cli import main

    out = tmp_path / "grid.png"
    assert main(["preview", "--set", "augment.image.rotate=20", "--set", "augment.image.erase=0.25",
                 "--examples", "2", "--copies", "2", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["preview", "--photos", "--size", "32", "--set", "augment.image.hue=0.2", "--examples", "2",
                 "--copies", "1", "--out", str(tmp_path / "photos.png")]) == 0
    assert main(["preview", "--set", "augment.image.saturation=0.3", "--out", str(tmp_path / "no.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tamenet preview: error: augment.image.saturation: a colour transform needs 3-channel (RGB) images, "
                   "got 1 channel (shape [1, 8, 8]); set it to 0"]
    assert not (tmp_path / "no.png").exists()


def test_text_preview_calls_the_text_modalitys_preview_with_the_members_strengths(tmp_path, monkeypatch):
    import argparse
    import dataclasses
    import sys
    import types

    from tamenet.cli_preview import preview_texts

    calls = []
    fake = types.ModuleType("tamenet.augment.text")
    fake.preview_text = lambda texts, strengths, *, copies, seed: calls.append((texts, strengths, copies, seed)) or [
        f"original: {t}" for t in texts]
    monkeypatch.setitem(sys.modules, "tamenet.augment.text", fake)

    @dataclasses.dataclass(frozen=True)
    class TextSection:
        synonym: list = dataclasses.field(default_factory=lambda: [0.2])
        word_delete: float = 0.1
        synonyms: str | None = None

    recipe = SimpleNamespace(augment=SimpleNamespace(text=TextSection()), seed=[7])
    texts = tmp_path / "texts.txt"
    texts.write_text("a good film\n\nbad acting\n")
    args = argparse.Namespace(texts=str(texts), examples=5, copies=2, out=str(tmp_path / "t.png"))
    assert "2 x 2 augmented strings" in preview_texts(recipe, args)
    assert calls == [(["a good film", "bad acting"], {"synonym": 0.2, "word_delete": 0.1}, 2, 7)]
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
