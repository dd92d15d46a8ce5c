"""deepvis invert / texture / style: feature inversion, Gram texture synthesis and style transfer."""
from __future__ import annotations

import argparse

from toolbox.cli.options import add_model_options, config_from_args


def _changes(args) -> dict:
    return {key: getattr(args, key, None) for key in ("steps", "style_weight", "content_weight", "tv_weight", "layers",
                                                       "seed", "octaves")
            if getattr(args, key, None) is not None}


def cmd_invert(args) -> int:
    from toolbox.analysis.inversion import InversionSettings
    from toolbox.jobs.invert import run_invert

    from toolbox.errors import DeepvisError

    if args.steps is not None and args.steps < 1:
        raise DeepvisError(f"--steps must be 1 or more, not {args.steps}")
    settings = InversionSettings().replace(steps=args.steps, seed=args.seed)
    run = run_invert(args.input, args.out, config_from_args(args), args.layers or args.layer, args.size, settings,
                     progress=not args.quiet)
    for note in run.notes:
        print(f"deepvis: {note}")
    print(f"wrote {run.written} ({', '.join(f'{k} {v:.1f} dB' for k, v in run.psnr.items())})")
    return 0


def cmd_texture(args) -> int:
    from toolbox.jobs.style import run_texture

    run = run_texture(args.style, args.out, config_from_args(args), args.size, _changes(args), progress=not args.quiet)
    for note in run.notes:
        print(f"deepvis: {note}")
    print(f"wrote {run.written[0]}")
    return 0


def cmd_style(args) -> int:
    from toolbox.jobs.style import run_style

    run = run_style(args.input, args.style, args.out, config_from_args(args), _changes(args), args.max_side,
                    args.max_frames, args.video_steps, progress=not args.quiet)
    for note in run.notes:
        print(f"deepvis: {note}")
    print(f"wrote {', '.join(map(str, run.written))}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, help="optimisation steps (per octave)")
    p.add_argument("--seed", type=int, help="random seed (same seed, same picture)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("invert", help="reconstruct an image from one layer's activation (what the layer keeps)")
    p.add_argument("input", help="image | video (its first frame)")
    p.add_argument("--out", required=True, help="output .png (or a folder)")
    add_model_options(p)
    p.add_argument("--layers", help="'all': a labelled strip, input then every visualisable layer and logits; "
                   "or name,name,...")
    p.add_argument("--size", type=int, default=160, help="long side reconstructed, pixels (default 160)")
    _common(p)
    p.set_defaults(run=cmd_invert)

    styling = argparse.ArgumentParser(add_help=False)
    styling.add_argument("--layers", help="style layers name,name,... (default: the model's tuned set, one per stage)")
    styling.add_argument("--style-weight", type=float, help="weight of the normalised Gram loss (default 1)")
    styling.add_argument("--tv-weight", type=float, help="weight of the total variation (default 1)")
    p = sub.add_parser("texture", parents=[styling], help="synthesise a texture with a style image's Gram matrices")
    p.add_argument("style", help="style image")
    p.add_argument("--out", required=True, help="output .png")
    p.add_argument("--size", type=int, default=256, help="texture side, pixels (default 256)")
    p.add_argument("--octaves", type=int, help="coarse-to-fine levels (default 3)")
    add_model_options(p, layer=False)
    _common(p)
    p.set_defaults(run=cmd_texture)

    p = sub.add_parser("style", parents=[styling], help="restyle an image, a folder of images or a video (Gatys)")
    p.add_argument("input", help="image | folder of images | video")
    p.add_argument("--style", required=True, help="style image (toolbox/styles/ has three)")
    p.add_argument("--out", required=True, help="output image or video path, or a folder")
    p.add_argument("--content-weight", type=float, help="weight of the content loss (default 0.3)")
    p.add_argument("--max-side", type=int, default=512, help="long side stylised at, pixels (default 512; 0 full size)")
    p.add_argument("--max-frames", type=int, help="video: stop after N frames")
    p.add_argument("--video-steps", type=int, help="video: steps per frame after the first (default steps/3)")
    add_model_options(p, layer=False)
    _common(p)
    p.set_defaults(run=cmd_style)
