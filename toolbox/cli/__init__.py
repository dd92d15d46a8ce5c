"""The deepvis command: one subcommand per job. User errors print one line and exit non-zero."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

from toolbox import __version__
from toolbox.errors import DeepvisError
from toolbox.runtime import keep_freed_memory

from toolbox.cli.options import (EXIT_USER_ERROR, CommandLineParser, add_backend_options as _add_backend_options,
                                 add_model_options as _add_model_options, config_from_args as _config)


def _command_groups() -> list[str]:
    """Modules of this package that add subcommands: each defines add_commands(subparsers)."""
    import pkgutil

    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "options")


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
    if args.all and model.module is None:  # a user ONNX graph: its layers are all its feature maps
        names = model.layers
    infos = model.layer_infos([n for n, _ in model.module.named_modules() if n] if names is None else names)
    rows = [("#", "layer", "type", "output shape", "channels")]
    rows += [(str(i), info.name, info.type, "x".join(map(str, info.shape)), str(info.channels))
             for i, info in enumerate(infos)]
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    params = sum(p.numel() for p in model.module.parameters()) if model.module is not None else 0
    print(f"{model.name}: {params:,} parameters, input {model.preprocess.size}x{model.preprocess.size}, "
          f"weights {model.weights}")
    return 0


def cmd_analyze(args) -> int:
    from toolbox.jobs.batch import analyze_archive, analyze_on_ray, archive_sources, import_ray

    config = _config(args, **{"analyze.every": args.every, "analyze.max_frames": args.max_frames})
    metrics = () if args.metrics is None else _metric_names(args.metrics)
    if metrics and args.ray is not None:
        raise DeepvisError("--metrics runs in this process: drop --ray, or drop --metrics")
    if args.ray is not None:
        import_ray()  # says how to install it before any work
    if args.workers is not None and args.workers < 1:
        raise DeepvisError(f"--workers must be 1 or more, not {args.workers}")
    task_threads = args.threads or 1  # under --ray: threads per task (the workers run side by side)
    sources = archive_sources(args.source)
    if sources is not None:
        outcomes = analyze_archive(args.source, sources, args.out, config, saliency=args.saliency,
                                   ray_address=args.ray, workers=args.workers, threads=task_threads,
                                   segment_seconds=args.segment_seconds, progress=not args.quiet,
                                   metrics=metrics, metrics_every=args.metrics_every)
        failed = [o for o in outcomes if o.status == "failed"]
        skipped = sum(o.status == "skipped" for o in outcomes)
        print(f"{len(outcomes) - len(failed) - skipped} analysed, {skipped} already done, {len(failed)} failed: "
              f"{os.path.join(args.out, 'index.html')}")
        if failed:
            raise DeepvisError(f"{len(failed)} of {len(outcomes)} videos failed, first {failed[0].source}: "
                               f"{failed[0].error} (all listed in {os.path.join(args.out, 'index.html')})")
        return 0
    if args.ray is not None:
        folder = analyze_on_ray(args.source, args.out, config, args.saliency, args.ray, args.workers, task_threads,
                                args.segment_seconds, progress=not args.quiet)
        print(f"wrote {folder}/report.html, annotated.mp4, frames.jsonl, summary.json")
        return 0
    from toolbox.jobs.analyze import analyze

    outputs = analyze(args.source, args.out, config, progress=not args.quiet, saliency=args.saliency,
                      segment_seconds=args.segment_seconds, metrics=metrics, metrics_every=args.metrics_every)
    print(f"wrote {outputs.report}, {outputs.video}, {outputs.frames}, {outputs.summary}")
    return 0


def _metric_names(spec: str) -> tuple[str, ...]:
    """"all" or a comma list of faithfulness metric names."""
    from toolbox.analysis.saliency.metrics import METRICS

    if spec == "all":
        return METRICS
    names = tuple(m.strip() for m in spec.split(",") if m.strip())
    for name in names:
        if name not in METRICS:
            raise DeepvisError(f"unknown metric '{name}': choose from {', '.join(METRICS)} or all")
    return names


def cmd_inspect(args) -> int:
    from toolbox.jobs.inspect import inspect

    methods = None if not args.methods else [m.strip() for m in args.methods.split(",") if m.strip()]
    metrics = () if args.metrics is None else _metric_names(args.metrics)
    written = inspect(args.image, args.out, _config(args), methods=methods, metrics=metrics)
    if metrics:
        print(written["saliency/metrics"].read_text(), end="")
    print(f"wrote {len(written)} files under {args.out}")
    return 0


def cmd_live(args) -> int:
    from toolbox.app.live import LiveOptions, run_live

    from toolbox.atomic import check_writable_folder

    options = LiveOptions(paced=not args.fast, record=args.record, snapshot_dir=args.out, record_dir=args.out,
                          max_frames=args.max_frames, index=args.index, cav=args.cav)
    # --threads sets the live compute thread's count; capture and display run beside it
    config = _config(args, **{"live.torch_threads": args.threads})
    for folder in dict.fromkeys([args.out] if args.out else [config.live.snapshot_dir, config.live.record_dir]):
        check_writable_folder(folder)  # before the window opens, so that a snapshot cannot fail later
    app = run_live(args.source, config, options)
    if app.failure:
        print(f"deepvis: error: {app.failure}", file=sys.stderr)
    # Everything is released by now (threads joined, source closed, recording finalised); skip the
    # interpreter's teardown, which takes 1-2 s with torch loaded, so that q closes the app at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(app.exit_code)


def cmd_dream(args) -> int:
    from toolbox.jobs.dream import DreamOptions, run_dream

    options = DreamOptions(preset=args.preset, layers=args.layers, octaves=args.octaves, scale=args.scale,
                           steps=args.steps, step_size=args.step_size, tile=args.tile, seed=args.seed,
                           max_frames=args.max_frames, **({} if args.max_side is None else {"max_side": args.max_side}))
    run = run_dream(args.input, args.out, _config(args), options, progress=not args.quiet)
    for note in run.notes:
        print(f"deepvis: {note}")
    written = run.written
    print(f"wrote {written[0] if len(written) == 1 else f'{len(written)} files under {args.out}'}"
          + (f"; skipped {len(run.skipped)} unreadable: {', '.join(s['file'] for s in run.skipped)}" if run.skipped else ""))
    return 0


def cmd_units(args) -> int:
    from toolbox.jobs.units import units

    result = units(_config(args), channels=args.channels, out=args.out, preset_name=args.preset, steps=args.steps,
                   size=args.size, batch=args.batch, progress=not args.quiet)
    print(f"{len(result.channels)} unit images in {result.folder} (overview {result.sheet.name})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(prog="deepvis", description="See what a convolutional network sees.")
    parser.add_argument("--version", action="version", version=f"deepvis {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the models deepvis can load")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("layers", help="table of a model's layers with output shapes")
    _add_model_options(p, layer=False)
    p.add_argument("--all", action="store_true", help="every module, not only the visualisable layers")
    _add_backend_options(p, backend=False)
    p.set_defaults(run=cmd_layers)

    p = sub.add_parser("analyze", help="HTML report, annotated video and per-frame data for a video, camera or "
                       "images, or for an archive of videos (headless)")
    p.add_argument("source", help="demo | video file | image | folder | camera index | URL; or an archive: a glob "
                   "('archive/**/*.mp4'), a folder of videos or a .txt list of sources")
    p.add_argument("--out", required=True, help="output folder")
    _add_model_options(p)
    p.add_argument("--every", type=int, help="process every N-th frame")
    p.add_argument("--max-frames", type=int, help="stop after N processed frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--saliency", metavar="METHOD", help="show this saliency map over the input in the zoom pane and "
                   "in the report's key moments (default there: gradcam): "
                   "gradient | guided | deconvnet | gradcam | guided_gradcam | input_x_gradient | smoothgrad | ...")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run the videos as Ray tasks: alone, a local Ray; 'auto' or ray://host:port an existing "
                   "cluster (needs pip install 'deepvis[ray]')")
    p.add_argument("--workers", type=int, help="--ray local: tasks at once (default: one per core / --threads; "
                   "under --ray, --threads is what each task declares and uses, default 1)")
    p.add_argument("--segment-seconds", type=float, help="split each video into stretches this long, reached by "
                   "seeking (--ray default 300); the report is the same as unsplit")
    p.add_argument("--metrics", nargs="?", const="deletion", metavar="M1,M2|all",
                   help="score the --saliency map's faithfulness per frame (default deletion; also insertion, road, "
                        "average_drop, increase_in_confidence): frames.jsonl 'saliency_metrics', summary mean")
    p.add_argument("--metrics-every", type=int, default=10, metavar="N",
                   help="score every N-th processed frame (default 10; metrics cost many forward passes)")
    _add_backend_options(p)
    p.set_defaults(run=cmd_analyze)

    p = sub.add_parser("inspect", help="predictions, filters, every layer's feature maps and every saliency map "
                       "for one image")
    p.add_argument("image")
    p.add_argument("--out", required=True, help="output folder")
    _add_model_options(p)
    p.add_argument("--methods", metavar="M1,M2", help="saliency methods to draw (default: all; deepvis inspect "
                   "writes them in saliency/sheet.png)")
    p.add_argument("--metrics", nargs="?", const="all", metavar="all|M1,M2",
                   help="faithfulness of each map (deletion, insertion, road, average_drop, "
                        "increase_in_confidence): prints and writes saliency/metrics.md and .json with the ranking")
    p.set_defaults(run=cmd_inspect)

    p = sub.add_parser("live", help="the interactive window: activations of a camera, video or images as they play")
    p.add_argument("source", nargs="?", default="0", help="camera index (default 0) | demo | video | images | URL")
    _add_model_options(p, threads_help="CPU threads of the compute thread (default live.torch_threads, 1: "
                       "capture and display need the other cores)")
    p.add_argument("--fast", action="store_true", help="files as fast as the model computes, not at their frame rate")
    p.add_argument("--record", action="store_true", help="start recording the window to MP4 at once")
    p.add_argument("--out", help="folder for snapshots and recordings (default: live.snapshot_dir / record_dir)")
    p.add_argument("--max-frames", type=int, help=argparse.SUPPRESS)  # benchmarks: quit after N shown frames
    p.add_argument("--index", help="feature index (deepvis index) for the neighbours (Shift+n) and map (Shift+m) panes; "
                   "default: the frames of this session")
    p.add_argument("--cav", help="CAV folder (deepvis tcav --out) for the concept meter")
    _add_backend_options(p)
    p.set_defaults(run=cmd_live)

    p = sub.add_parser("dream", help="DeepDream an image, a folder of images or a video")
    p.add_argument("input", help="image | folder of images | video")
    p.add_argument("--out", required=True, help="output image or video path, or a folder")
    _add_model_options(p, layer=False)
    p.add_argument("--preset", default="classic", choices=("classic", "tf-tutorial"), help="reference schedule")
    p.add_argument("--layers", help="name[:weight[:kind[:index]]],... kind: l2 mean channel logit (deepvis layers)")
    p.add_argument("--octaves", type=int, help="octave count (preset: classic 4, tf-tutorial 5)")
    p.add_argument("--scale", type=float, help="size ratio between octaves (classic 1.4, tf-tutorial 1.3)")
    p.add_argument("--steps", type=int, help="ascent steps per octave (classic 10, tf-tutorial 100)")
    p.add_argument("--step-size", type=float, help="mean change per step in grey levels of 255 (classic 1.5)")
    p.add_argument("--tile", type=int, help="tile side in pixels (default: untiled while the image fits)")
    p.add_argument("--seed", type=int, help="random seed of the jitter (same seed, same dream)")
    p.add_argument("--max-frames", type=int, help="video: stop after N frames")
    p.add_argument("--max-side", type=int, help="dream with the long side at most this many pixels, "
                   "then resize back (default 1024; 0: full size, slow and memory-hungry for large photos)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_dream)

    p = sub.add_parser("units", help="precompute each channel's synthetic image (activation maximisation) into the cache")
    _add_model_options(p)
    p.add_argument("--channels", help="slice like 0:64 or list like 3,5,9 (default: every channel)")
    p.add_argument("--out", help="cache folder (default: $DEEPVIS_CACHE/units or ~/.cache/deepvis/units)")
    p.add_argument("--preset", default="lucid", choices=("lucid", "yosinski"), help="regularisation school")
    p.add_argument("--steps", type=int, help="optimisation steps (preset default 128)")
    p.add_argument("--size", type=int, help="image side in pixels (preset default 128)")
    p.add_argument("--batch", type=int, default=32, help="channels optimised together")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_units)
    import importlib

    for group in _command_groups():
        importlib.import_module(f"toolbox.cli.{group}").add_commands(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like SIGINT's KeyboardInterrupt so that the same cleanup runs."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def _job_signals():
    """SIGTERM cleans up like Ctrl-C (exit 143); SIGXFSZ (``ulimit -f``) is ignored so that a write
    past the limit fails with EFBIG, a one-line error, instead of killing the process mid-file.
    The previous handlers come back afterwards (main() called in-process, as the tests do)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield
        return
    wanted = {signal.SIGTERM: _raise_terminated}
    if hasattr(signal, "SIGXFSZ"):
        wanted[signal.SIGXFSZ] = signal.SIG_IGN
    previous = {signum: signal.signal(signum, handler) for signum, handler in wanted.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # before the first large tensor (toolbox.runtime)
    try:
        with _job_signals():
            return args.run(args)
    except DeepvisError as error:
        print(f"deepvis: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:  # a write the machine refused (disk full, size limit, read-only) not caught nearer
        from toolbox.atomic import write_failure

        failure = write_failure(error.filename or "an output file", error)
        if failure is None:
            raise
        print(f"deepvis: error: {failure}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Terminated:
        print("deepvis: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("deepvis: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
