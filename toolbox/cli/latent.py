"""deepvis index / neighbours / map / tcav: the latent-space commands."""
from __future__ import annotations

import argparse
import dataclasses

from toolbox.cli.options import add_model_options, config_from_args


def _index_config(args):
    """The config with the model left unset unless the user named one (the index's own then applies)."""
    config = config_from_args(args)
    return dataclasses.replace(config, model=dataclasses.replace(config.model, name=args.model, weights=args.weights))


def cmd_index(args) -> int:
    from toolbox.jobs.index import build_index

    result = build_index(args.sources, args.out, config_from_args(args), every=args.every, pool=args.pool,
                         max_frames=args.max_frames, progress=not args.quiet, patches=args.patches)
    skipped = f"; already complete: {', '.join(result.skipped_sources)}" if result.skipped_sources else ""
    unit = "patches" if args.patches else "frames"
    print(f"added {result.added} {unit} to {result.folder} ({result.total} in all, {result.search} search){skipped}")
    return 0


def cmd_neighbours(args) -> int:
    from toolbox.jobs.neighbours import neighbours

    result = neighbours(args.query, args.index, args.out, _index_config(args), k=args.k)
    print(f"wrote {result.montage} and {result.json}")
    return 0


def cmd_map(args) -> int:
    from toolbox.jobs.map import draw_map

    result = draw_map(args.index, args.out, method=args.method, color=args.color, seed=args.seed, grid=args.grid)
    print(f"wrote {result.image} and {result.coords}")
    return 0


def cmd_tcav(args) -> int:
    from toolbox.jobs.tcav import TcavOptions, run_tcav

    options = TcavOptions(concepts=args.concept, random=args.random, random_runs=args.random_runs,
                          target=args.target_class, layers=args.layers, inputs=args.inputs, seed=args.seed,
                          max_inputs=args.max_inputs, set_size=args.set_size, size=args.size)
    result = run_tcav(options, args.out, config_from_args(args), progress=not args.quiet)
    print(f"wrote {result.chart}, {result.json} and the CAVs in {result.cavs}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="embed frames of videos, images or folders as pooled layer features (appendable)")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="demo | bikes | video | image | folder | camera | URL")
    p.add_argument("--out", required=True, help="index folder (created, or appended to)")
    add_model_options(p)
    p.add_argument("--every", type=int, default=1, help="take every N-th frame (default 1)")
    p.add_argument("--pool", default="mean", choices=("mean", "max"), help="spatial pooling of the layer (mean)")
    p.add_argument("--max-frames", type=int, help="frames per source at most (needed for cameras and streams)")
    p.add_argument("--patches", action="store_true", help="one vector per position of a mid layer (default: the "
                   "middle visualisable one), with its receptive-field crop: neighbours of parts (query #ITEM)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_index)

    p = sub.add_parser("neighbours", help="the indexed frames nearest to an image, a video frame or an index item")
    p.add_argument("query", help="image | video@12.5s | video@FRAME | #ITEM (an item of the index)")
    p.add_argument("--index", required=True, help="index folder (deepvis index)")
    p.add_argument("-k", type=int, default=8, help="neighbours to show (default 8)")
    p.add_argument("--out", required=True, help="output folder: neighbours.png, neighbours.json")
    p.add_argument("--model", help="model (default: the index's)")
    p.add_argument("--weights", help="weights (default: the index's)")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--config", help="YAML file overriding configs/default.yaml")
    p.set_defaults(run=cmd_neighbours)

    p = sub.add_parser("map", help="2-D map (atlas of thumbnails) of an index: PCA, UMAP or t-SNE")
    p.add_argument("index", help="index folder (deepvis index)")
    p.add_argument("--method", default="pca", choices=("pca", "umap", "tsne"), help="projection (default pca)")
    p.add_argument("--out", required=True, help="output image (.png); the coordinates go beside it (.csv)")
    p.add_argument("--color", default="class", choices=("class", "source", "time"), help="point colour")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same map)")
    p.add_argument("--grid", type=int, default=24, help="atlas cells per side (default 24)")
    p.set_defaults(run=cmd_map)

    p = sub.add_parser("tcav", help="concept activation vectors and TCAV scores with significance (captum)")
    p.add_argument("--concept", action="append", required=True, metavar="NAME=DIR",
                   help="a concept: a name and a folder of its images (repeat for more)")
    p.add_argument("--random", required=True, metavar="DIR", help="folder of random counterexample images")
    p.add_argument("--random-runs", type=int, default=10, help="random counterexample sets (at least 10)")
    p.add_argument("--class", dest="target_class", required=True, help="target class name or index")
    p.add_argument("--layers", required=True, help="comma-separated layer names (deepvis layers)")
    p.add_argument("--inputs", default="demo", help="the pictures whose class score is tested (default: demo)")
    p.add_argument("--max-inputs", type=int, default=40, help="input pictures at most (frames evenly spread)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sets and the classifiers")
    p.add_argument("--set-size", type=int, help="pictures per random set (default: the largest concept's count)")
    p.add_argument("--size", type=int, help="picture side fed to the model (default: its input size; smaller is faster)")
    p.add_argument("--out", required=True, help="output folder: tcav.png, tcav.json, cavs/")
    add_model_options(p, layer=False)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_tcav)
