"""The deepvis command: one subcommand per job. User errors print one line and exit non-zero."""
from __future__ import annotations

import argparse
import sys

from toolbox import __version__
from toolbox.errors import DeepvisError

EXIT_USER_ERROR = 2


def _add_model_options(parser: argparse.ArgumentParser, layer: bool = True) -> None:
    parser.add_argument("--model", help="model name (deepvis models), default lite0")
    parser.add_argument("--weights", help="state-dict .pth path, or 'none' for random weights")
    parser.add_argument("--device", help="auto | cpu | cuda")
    if layer:
        parser.add_argument("--layer", help="layer name or index (deepvis layers)")
    parser.add_argument("--config", help="YAML file overriding configs/default.yaml")


def _config(args, **extra):
    from toolbox.config import load_config

    overrides = {
        "model.name": getattr(args, "model", None),
        "model.weights": getattr(args, "weights", None),
        "model.device": getattr(args, "device", None),
        "model.layer": getattr(args, "layer", None),
        **extra,
    }
    return load_config(getattr(args, "config", None), overrides)


def cmd_models(args) -> int:
    from toolbox.models.registry import DEFAULT_MODEL, available_models

    for name in available_models():
        print(f"{name}{'  (default, bundled weights)' if name == DEFAULT_MODEL else ''}")
    print("Any other torchvision classifier name works too; torchvision weights come from its cache or --weights.")
    return 0


def cmd_layers(args) -> int:
    from toolbox.jobs.common import model_from_config

    model = model_from_config(_config(args))
    names = None if args.all else model.layers
    infos = model.layer_infos([n for n, _ in model.module.named_modules() if n] if args.all else names)
    rows = [("#", "layer", "type", "output shape", "channels")]
    rows += [(str(i), info.name, info.type, "x".join(map(str, info.shape)), str(info.channels))
             for i, info in enumerate(infos)]
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    params = sum(p.numel() for p in model.module.parameters())
    print(f"{model.name}: {params:,} parameters, input {model.preprocess.size}x{model.preprocess.size}, "
          f"weights {model.weights}")
    return 0


def cmd_analyze(args) -> int:
    from toolbox.jobs.analyze import analyze

    config = _config(args, **{"analyze.every": args.every, "analyze.max_frames": args.max_frames})
    outputs = analyze(args.source, args.out, config, progress=not args.quiet)
    print(f"wrote {outputs.video}, {outputs.frames}, {outputs.summary}")
    return 0


def cmd_inspect(args) -> int:
    from toolbox.jobs.inspect import inspect

    written = inspect(args.image, args.out, _config(args))
    print(f"wrote {len(written)} files under {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepvis", description="See what a convolutional network sees.")
    parser.add_argument("--version", action="version", version=f"deepvis {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the models deepvis can load")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("layers", help="table of a model's layers with output shapes")
    _add_model_options(p, layer=False)
    p.add_argument("--all", action="store_true", help="every module, not only the visualisable layers")
    p.set_defaults(run=cmd_layers)

    p = sub.add_parser("analyze", help="annotated video + per-frame JSON for a video, camera or images (headless)")
    p.add_argument("source", help="demo | video file | image | folder | camera index | URL")
    p.add_argument("--out", required=True, help="output folder")
    _add_model_options(p)
    p.add_argument("--every", type=int, help="process every N-th frame")
    p.add_argument("--max-frames", type=int, help="stop after N processed frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_analyze)

    p = sub.add_parser("inspect", help="predictions, filters and every layer's feature maps for one image")
    p.add_argument("image")
    p.add_argument("--out", required=True, help="output folder")
    _add_model_options(p)
    p.set_defaults(run=cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except DeepvisError as error:
        print(f"deepvis: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("deepvis: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
