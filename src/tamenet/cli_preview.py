"""`tamenet preview [RECIPE] --out grid.png`: what the recipe's augmentation does, before training on it.

A grid of examples: each row one original image and `--copies` augmented versions of it (successive steps of one
member's random stream, the same code path as training); with ``augment.mix`` (mixup / cutmix) each copy is then
mixed with a partner image of the grid, as the training step does, and its title gives the label weights.
Audio (`--modality audio`): log-mel spectrograms of recordings of the recipe's WAV folder (a synthetic tone when
the recipe's data is no audio) and of their augmented versions. Images come from the recipe's data set (viewed through
`model.input_shape` or its image shape, transformed in the standardized units training uses, drawn back in the
data's own units) or, with `--photos`, from scikit-learn's bundled colour photographs (`load_sample_images`,
RGB in [0, 1], down-sampled to `--size` pixels high). Other modalities plug in through `PREVIEWS`: a function
`(recipe, args) -> str` that writes `args.out` and returns a line to print.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

PREVIEWS: dict[str, str] = {
    "image": "tamenet.cli_preview:preview_images",
    "text": "tamenet.cli_preview:preview_texts",
    "audio": "tamenet.cli_preview:preview_waves",
}
"""Modality -> 'module:function' drawing its preview, `(recipe, args) -> str`."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("preview", help="draw a grid of original and augmented examples of a recipe's augmentation")
    p.add_argument("recipe", nargs="?", help="a YAML recipe file (default: the default job)")
    p.add_argument("--out", required=True, help="the PNG file to write (written atomically)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set augment.image.rotate=30 (repeatable)")
    p.add_argument("--modality", default="image", choices=list(PREVIEWS), help="what to preview (default image)")
    p.add_argument("--photos", action="store_true",
                   help="use scikit-learn's colour photographs (load_sample_images) instead of the recipe's data")
    p.add_argument("--size", type=int, default=96, help="--photos: height in pixels after down-sampling (default 96)")
    p.add_argument("--examples", type=int, default=6, help="originals shown, one per row (default 6)")
    p.add_argument("--copies", type=int, default=5, help="augmented versions of each original (default 5)")
    p.add_argument("--texts", help="--modality text: a file of example strings, one per line")
    p.add_argument("--member", type=int, default=0, help="the population member whose numbers and seed are used")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")


def run(args: argparse.Namespace) -> int:
    from .recipes import load_recipe, select_members
    from .config import population_size
    from .registry import lookup

    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        raise ValueError(f"--out: expected an image file name in an existing folder, got {args.out}"
                         + (" (a folder)" if out.is_dir() else f" (no folder {out.parent})"))
    recipe = load_recipe(args.recipe, args.overrides)
    members = population_size(recipe)
    if not 0 <= args.member < members:
        raise ValueError(f"--member: expected a member index in [0, {members - 1}], got {args.member}")
    for name, value in (("--examples", args.examples), ("--copies", args.copies), ("--size", args.size)):
        if value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value}")
    recipe = select_members(recipe, [args.member])
    target = lookup(PREVIEWS, args.modality, "preview modality")
    module, _, function = target.partition(":")
    draw: Callable[[Any, argparse.Namespace], str] = getattr(__import__(module, fromlist=[function]), function)
    print(draw(recipe, args))
    return 0


def sample_photos(size: int) -> "Any":
    """scikit-learn's two bundled colour photographs as a tensor [2, 3, size, W] in [0, 1] (area down-sampling)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_sample_images

    photos = torch.stack([torch.from_numpy(image.copy()) for image in load_sample_images().images]).float()
    photos = photos.permute(0, 3, 1, 2) / 255.0
    width = round(photos.shape[-1] * size / photos.shape[-2])
    return F.interpolate(photos, size=(size, width), mode="area")


def preview_images(recipe, args: argparse.Namespace) -> str:
    """The image grid of `tamenet preview`; returns the line to print."""
    import torch

    from .augment.image import IMAGE_OPS, _scalar, augment_images, image_shape_of
    from .nn import mix_seed

    seed = recipe.seed[0] if isinstance(recipe.seed, list) else int(recipe.seed)
    if args.photos:
        originals = sample_photos(args.size)
        labels = torch.arange(args.examples) % len(originals)
        names = ["china", "flower"]
        originals = originals[labels]
        scale, shift, source = None, None, "scikit-learn sample photographs"
    else:
        from .data import load_dataset

        data = load_dataset(recipe.data)
        shape = image_shape_of(recipe.model.input_shape or data.image_shape, f"data set '{data.name}'")
        X = torch.from_numpy(data.X[: args.examples]).float()
        labels = torch.from_numpy(data.y[: args.examples]).long() if data.task == "classification" else None
        names = [str(c) for c in (data.classes or ())]
        pool = torch.from_numpy(data.X).float()
        shift, scale = pool.mean(0), pool.std(0).clamp_min(1e-6)  # per feature, as training standardizes
        if not recipe.data.standardize:
            shift, scale = torch.zeros_like(shift), torch.ones_like(scale)
        originals = ((X - shift) / scale).view(-1, *shape)
        source = f"data set '{data.name}'"
    columns, captions = [originals], None
    for copy in range(args.copies):  # copy k: the member's draws at step k (a photo repeated gets fresh draws)
        columns.append(augment_images(originals, recipe.augment.image, seed=mix_seed(seed, 0x9E37), step=copy))
    if recipe.augment.mix.kind != "none":
        if labels is None:
            raise ValueError("augment.mix: the preview shows the label weights of classes, got a data set without "
                             "classes")
        captions = [["original"] + [""] * args.copies for _ in range(len(originals))]
        for copy in range(1, len(columns)):
            columns[copy], weights = mix_preview(columns[copy], labels, recipe, seed=seed, step=copy - 1)
            for r, (own, lam, other) in enumerate(weights):
                captions[r][copy] = (f"{lam:.2f} {names[own]}" if lam >= 0.995 else
                                     f"{lam:.2f} {names[own]}\n+ {1 - lam:.2f} {names[other]}")
    grid = torch.stack(columns, 1)  # [examples, 1 + copies, C, H, W]
    if scale is not None:
        flat = grid.flatten(2) * scale + shift
        grid = flat.view(grid.shape)
    mixed = f", then {recipe.augment.mix.kind}" if captions is not None else ""
    draw_grid(grid, args.out, title=f"{source}: originals (left) and {args.copies} augmented copies{mixed}",
              captions=captions)
    line = f"preview: {args.examples} x {args.copies} augmented{mixed} examples of {source} written to {args.out}"
    if captions is None and not any(_scalar(getattr(recipe.augment.image, op), op) > 0 for op in IMAGE_OPS):
        line += " (no augment.image transform is on: the copies equal the originals)"
    return line


def mix_preview(images, labels, recipe, *, seed: int, step: int):
    """Images [B, C, H, W] mixed as the training step mixes them (`augment.mix.Mix`, member seeded `seed` at
    `step`), and per image (own class, own share lam, partner's class)."""
    import torch

    from .augment.mix import Mix
    from .nn import MemberRandom

    cfg = recipe.augment.mix
    random = MemberRandom([seed])
    random.step = step
    shape = tuple(images.shape[1:])
    model = type("Preview", (), {"random": random, "input_shape": shape})()
    hyper = {"mix_p": torch.tensor([float(_one(cfg.p))]), "mix_alpha": torch.tensor([float(_one(cfg.alpha))])}
    trainer = type("Preview", (), {"members": 1, "model": model, "hyper": hyper,
                                   "data": type("Rows", (), {"task": "classification"})()})()
    piece = Mix(cfg.kind, shape)
    piece.begin_epoch(trainer)
    x, mixed = piece(trainer, images.flatten(1), labels)
    weights = list(zip(mixed.own[0].tolist(), mixed.lam[0].tolist(), mixed.other[0].tolist()))
    return x[0].view(images.shape), weights


def draw_grid(grid, path: str, *, title: str, captions: list[list[str]] | None = None, cmap: str | None = None) -> None:
    """A figure of images grid [R, K, C, H, W] (grey for C = 1, RGB for C = 3), each image on its own colour scale
    for grey, clipped to [0, 1] for RGB; `captions` [R][K] titles every image (else the first row's are
    "original", "aug k"); `cmap` a matplotlib colour map for grey images (spectrograms: magma)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .track import save_figure

    rows, cols, channels = grid.shape[:3]
    aspect = grid.shape[-1] / grid.shape[-2]
    height = 1.4 + (0.25 if captions is not None else 0.0)
    figure = Figure(figsize=(1.4 * cols * aspect + 0.4, height * rows + 0.6), dpi=110)
    FigureCanvasAgg(figure)
    lo, hi = float(grid.min()), float(grid.max())
    for r in range(rows):
        for c in range(cols):
            axes = figure.add_subplot(rows, cols, r * cols + c + 1)
            image = grid[r, c].detach().cpu()
            if channels == 3:
                axes.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
            else:
                axes.imshow(image[0].numpy(), cmap=cmap or ("gray_r" if hi > 1.5 else "gray"), vmin=lo, vmax=hi,
                            aspect="auto" if cmap else None)
            axes.set_xticks([])
            axes.set_yticks([])
            if captions is not None:
                axes.set_title(captions[r][c], fontsize=6)
            elif r == 0:
                axes.set_title("original" if c == 0 else f"aug {c}", fontsize=8)
    figure.suptitle(title, fontsize=9)
    save_figure(figure, path)


def preview_texts(recipe, args: argparse.Namespace) -> str:
    """Text: each example string of `--texts` and `--copies` augmented versions, drawn as lines of a PNG. Calls
    `tamenet.augment.text.preview_text(strings, strengths, copies=, seed=)`, the strengths being the recipe's
    `augment.text` numbers of the chosen member."""
    from dataclasses import fields

    try:
        from .augment.text import preview_text
    except ImportError as err:
        raise ValueError("--modality text: text augmentation (tamenet.augment.text) is not part of this "
                         "installation") from err
    section = getattr(recipe.augment, "text", None)
    if section is None:
        raise ValueError("--modality text: the recipe has no augment.text section in this version")
    if not args.texts:
        raise ValueError("--modality text: expected --texts FILE (example strings, one per line), got none")
    with open(args.texts, encoding="utf-8") as handle:
        texts = [line.strip() for line in handle if line.strip()][: args.examples]
    if not texts:
        raise ValueError(f"--texts {args.texts}: expected at least one non-empty line, got none")
    strengths = {f.name: _one(getattr(section, f.name)) for f in fields(section)
                 if isinstance(_one(getattr(section, f.name)), (int, float))}
    seed = recipe.seed[0] if isinstance(recipe.seed, list) else int(recipe.seed)
    lines = preview_text(texts, strengths, copies=args.copies, seed=seed)
    draw_lines(lines, args.out, title="originals and augmented strings")
    return f"preview: {len(texts)} x {args.copies} augmented strings written to {args.out}"


def _one(value):
    return value[0] if isinstance(value, list) and value else value


def draw_lines(lines: list[str], path: str, *, title: str) -> None:
    """Lines of text as a PNG (monospace, long lines wrapped at 110 characters)."""
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .track import save_figure

    wrapped = [part for line in lines for part in (textwrap.wrap(line, 110, subsequent_indent="    ") or [""])]
    figure = Figure(figsize=(11, 0.22 * len(wrapped) + 0.8), dpi=110)
    FigureCanvasAgg(figure)
    figure.text(0.01, 0.99, title + "\n\n" + "\n".join(wrapped), va="top", ha="left", family="monospace",
                fontsize=8)
    save_figure(figure, path)


TONE_HZ = (440.0, 660.0)
"""The synthetic recordings of an audio preview without a WAV folder: one tone each (Hz), at 8 kHz, 1 s."""


def preview_waves(recipe, args: argparse.Namespace) -> str:
    """Audio: log-mel spectrograms (low frequencies at the bottom) of `--examples` recordings and `--copies`
    augmented versions each, by `tamenet.augment.audio.preview_audio` with the member's ``augment.audio``."""
    import numpy as np

    from .augment.audio import preview_audio
    from .augment.config_text_audio import AUDIO_DATA

    if recipe.data.name in AUDIO_DATA:
        from .data import load_dataset

        clips = load_dataset(recipe.data).raw
        waves, rate = clips.waves[: args.examples], clips.rate
        source = f"{len(waves)} recordings of {recipe.data.path}"
    else:
        rate = 8000
        t = np.arange(rate) / rate
        waves = np.stack([0.5 * np.sin(2 * np.pi * TONE_HZ[i % len(TONE_HZ)] * t) for i in range(args.examples)])
        source = f"synthetic tones ({', '.join(f'{f:g}' for f in TONE_HZ)} Hz; data '{recipe.data.name}' is no audio)"
    seed = recipe.seed[0] if isinstance(recipe.seed, list) else int(recipe.seed)
    bank = None
    if recipe.augment.audio.background_path is not None and recipe.data.name in AUDIO_DATA:
        from .train.text_audio_fit import background_bank

        bank = background_bank(recipe, clips, 1)
    spectra = preview_audio(waves, rate, recipe.augment.audio, copies=args.copies, seed=seed, bank=bank)
    import torch

    grid = torch.as_tensor(np.ascontiguousarray(spectra[:, :, ::-1])).unsqueeze(2)  # [N, 1 + copies, 1, mels, frames], low mel bands drawn at the bottom
    draw_grid(grid, args.out, title=f"log-mel spectrograms: {source}, originals (left) and {args.copies} augmented",
              cmap="magma")
    return f"preview: {len(waves)} x {args.copies} augmented spectrograms of {source} written to {args.out}"
