"""The `diffpipe` command (installed with the package): new images from a trained model, and what it is.

    diffpipe sample MODEL -n 16 --out grid.png      # also a folder of PNGs (--out pics/), .npy or .csv
    diffpipe info MODEL                             # JSON: configs, parameters, data md5, metrics

MODEL is an export folder (models/export) or a training checkpoint (models/checkpoint.pt); `--rev` / `--repo`
read it from another git revision, DVC experiment or project (diffpipe.load). The sampler options default to
the model's own (an export records the sample stage's), so `diffpipe sample models/export -n N --out x.npy`
writes the first N images of the sample stage's samples.npy, byte for byte.

Bad input (a missing file, a file that is not a model, an unknown sampler, n <= 0, …) is one line on stderr
naming it, exit code 2; a failure while sampling exits 1. Like every stage process (core/launch.py), this one
sets MKL_DYNAMIC=FALSE before torch loads, so the same command gives the same bytes on a busy machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional

from .core.errors import PipelineError
from .core.launch import process_environment

OUTPUTS = "a .png (a grid), a .npy (uint8 N, C, H, W), a .csv (pixel0… columns) or a folder (one PNG per image)"


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), exit code 2."""

    def error(self, message: str):
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    from .api import SAMPLERS  # the params schema's names (no torch)

    p = Parser(prog="diffpipe", description="Use a model trained by the diffpipe pipeline (docs/model.md).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    s = sub.add_parser("sample", help="draw new images", description="Draw new images from MODEL.")
    s.add_argument("model", metavar="MODEL", help="an export folder or a training checkpoint")
    s.add_argument("-n", "--num-images", type=int, default=16, help="how many images (default 16)")
    s.add_argument("--out", required=True, help=f"where: {OUTPUTS}")
    s.add_argument("--sampler", choices=SAMPLERS, help="default: the model's (the sample stage's for an export)")
    s.add_argument("--steps", type=int, help="DDIM steps")
    s.add_argument("--eta", type=float, help="DDIM eta: 0 deterministic, 1 DDPM-like")
    s.add_argument("--clip-x0", action=argparse.BooleanOptionalAction, default=None,
                   help="clamp each step's x0 prediction to the data range")
    s.add_argument("--seed", type=int, help="image i uses seed + i")
    s.add_argument("--labels", type=int, nargs="+", help="class-conditional models: the classes, repeated")
    s.add_argument("--guidance-scale", type=float, help="classifier-free guidance w (with --labels)")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    s.add_argument("--progress", action="store_true", help="show a progress bar")
    i = sub.add_parser("info", help="print what the model is (JSON)", description="Print MODEL's info as JSON.")
    i.add_argument("model", metavar="MODEL", help="an export folder or a training checkpoint")
    i.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    for command in (s, i):
        command.add_argument("--rev", help="a git revision, tag or DVC experiment to read MODEL at")
        command.add_argument("--repo", help="a DVC project's path or git URL (MODEL is relative to its root)")
    return p


def output_kind(out: str) -> str:
    """'png', 'npy', 'csv' or 'folder' for an --out path (a name without a suffix, or an existing folder, is a
    folder)."""
    path = Path(out)
    if out.endswith(("/", os.sep)) or path.is_dir() or not path.suffix:
        return "folder"
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("png", "npy", "csv"):
        raise UsageError(f"--out {out}: unknown output kind {path.suffix!r}; give {OUTPUTS}")
    return kind


def write_images(out: str, kind: str, images, labels) -> None:
    """uint8 (N, C, H, W) `images` (with their requested classes, or None) to `out` as `kind`, atomically."""
    import numpy as np

    from .core import files
    from .data.pixel_csv import write_pixel_csv
    from .pictures.grids import class_rows, display_scale, save_grid

    if kind == "npy":
        files.write_npy(out, images)  # as the sample stage's samples.npy
    elif kind == "csv":
        write_pixel_csv(out, images, labels)
    elif kind == "png":  # as the sample stage's grid.png
        scale = display_scale(images.shape[-1])
        if labels is None:
            save_grid(out, images, scale=scale)
        else:
            save_grid(out, *class_rows(images, np.asarray(labels), len(images)), scale=scale)
    else:
        from PIL import Image

        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(images):
            pixels = image.transpose(1, 2, 0)
            picture = Image.fromarray(pixels[:, :, 0], mode="L") if pixels.shape[2] == 1 else Image.fromarray(pixels)
            with files.atomic_path(folder / f"{index:06d}.png") as tmp:
                picture.save(tmp, format="PNG")


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command; returns its exit code (0; 1: failed while sampling or writing; 2: bad input; 130: Ctrl-C)."""
    # As every stage process: MKL_DYNAMIC (and the rest of the launcher's set-up) before torch loads.
    os.environ.update(process_environment(Path(__file__).resolve().parents[1], 1, False, os.environ))
    bad_input = True
    try:
        args = parser().parse_args(argv)
        if args.command == "info":
            from . import api

            print(json.dumps(api.load(args.model, rev=args.rev, repo=args.repo, device=args.device).info, indent=2))
            return 0
        if args.num_images < 1:
            raise UsageError(f"-n must be a whole number >= 1, got {args.num_images}")
        if args.batch_size < 1:
            raise UsageError(f"--batch-size must be a whole number >= 1, got {args.batch_size}")
        kind = output_kind(args.out)
        import numpy as np

        from . import api

        model = api.load(args.model, rev=args.rev, repo=args.repo, device=args.device)
        if kind == "csv" and model.image_shape[0] != 1:
            raise UsageError(f"--out {args.out}: the pixel CSV format holds 1-channel images; {args.model} makes "
                             f"{model.image_shape[0]}-channel images (use .png, .npy or a folder)")
        chosen = dict(sampler=args.sampler, steps=args.steps, eta=args.eta, clip_x0=args.clip_x0, seed=args.seed,
                      labels=args.labels, guidance_scale=args.guidance_scale)
        use = model.settings(**chosen)  # checked: a bad value is bad input
        bad_input = False
        images = model.sample(args.num_images, **chosen, batch_size=args.batch_size, precision=args.precision,
                              progress=args.progress)
        from .diffusion.generate import requested_labels

        nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))  # the sample stage's layout
        write_images(args.out, kind, nchw, requested_labels(use["labels"], len(images)))
        shown = ", ".join(f"{k} {v}" for k, v in use.items() if k != "labels" or v)
        print(f"diffpipe: wrote {len(images)} images to {args.out} ({shown})", file=sys.stderr)
        return 0
    except (UsageError, PipelineError) as e:
        print(f"diffpipe: error: {e}", file=sys.stderr)
        return 2 if bad_input else 1
    except KeyboardInterrupt:
        print("diffpipe: stopped (Ctrl-C)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `diffpipe info … | head`
        sys.stderr.close()
        return 1


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
