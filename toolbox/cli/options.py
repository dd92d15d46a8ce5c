"""Options shared by the deepvis subcommands, and the config they build."""
from __future__ import annotations

import argparse

EXIT_USER_ERROR = 2


class CommandLineParser(argparse.ArgumentParser):
    """argparse, with every refusal of the command line on one line, like deepvis's other errors:
    ``deepvis: error: <argparse's message>; see '<deepvis command> --help'``, exit 2 (argparse prints
    the usage first, and unknown options after a command are reported against the top level)."""

    commands: argparse._SubParsersAction | None = None

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"deepvis: error: {message}; see '{self.prog} --help'\n")

    def add_subparsers(self, **kwargs) -> argparse._SubParsersAction:
        """The subcommands (their parsers are of this class too); kept so that an unknown argument is
        reported by the command it was given to."""
        self.commands = super().add_subparsers(**kwargs)
        return self.commands

    def parse_args(self, args=None, namespace=None) -> argparse.Namespace:
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            command = getattr(parsed, self.commands.dest, None) if self.commands is not None else None
            refusing = self.commands.choices.get(command, self) if command is not None else self
            refusing.error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed


def add_model_options(parser: argparse.ArgumentParser, layer: bool = True, threads_help: str | None = None) -> None:
    parser.add_argument("--model", help="model name (deepvis models), default lite0")
    parser.add_argument("--weights", help="state-dict .pth path, or 'none' for random weights")
    parser.add_argument("--device", help="auto | cpu | cuda")
    if layer:
        parser.add_argument("--layer", help="layer name or index (deepvis layers)")
    parser.add_argument("--config", help="YAML file overriding configs/default.yaml")
    parser.add_argument("--threads", type=int, metavar="N", help=threads_help or
                        "CPU threads of torch, onnxruntime and OpenCV (default: every usable core)")


def add_backend_options(parser: argparse.ArgumentParser, backend: bool = True) -> None:
    """--backend, and --labels / --preprocess for a user's .onnx model (toolbox.models.onnx_user)."""
    if backend:
        parser.add_argument("--backend", choices=("torch", "onnx", "auto"),
                            help="torch | onnx (onnxruntime) | auto (the faster, measured once)")
    parser.add_argument("--labels", help="for --model FILE.onnx: class names file, one per line")
    parser.add_argument("--preprocess", help="for --model FILE.onnx: YAML with size, mean, std, scale")


def config_from_args(args, **extra):
    """The config for these arguments (defaults < --config file < flags < ``extra``). Applies its CPU
    thread count to this process (toolbox.cpu_threads), since every command builds its config here."""
    from toolbox.config import load_config
    from toolbox.cpu_threads import use_threads

    overrides = {
        "model.name": getattr(args, "model", None),
        "model.weights": getattr(args, "weights", None),
        "model.device": getattr(args, "device", None),
        "model.layer": getattr(args, "layer", None),
        "model.backend": getattr(args, "backend", None),
        "model.labels": getattr(args, "labels", None),
        "model.preprocess": getattr(args, "preprocess", None),
        "threads": getattr(args, "threads", None),
        **extra,
    }
    config = load_config(getattr(args, "config", None), overrides)
    use_threads(config.threads)
    return config
