"""Many videos: an archive (glob, folder or list file) analysed one folder per video, in this
process or as Ray tasks, with an index page linking every report.

Layout of ``--out DIR`` for an archive::

    DIR/index.html, DIR/index.json     every video: its report and a one-line summary, or its error
    DIR/<name>/                        one analyze output set per video (report.html, summary.json, ...)

A video's folder appears complete or not at all (toolbox.output_set), so a rerun skips the videos
whose folder is complete and does the rest: the command is resumable. A video that fails is listed
with its error and the others go on.

On Ray every video is split into segments of ``segment_seconds`` (by seeking); each segment is a
task, and one more task per video merges them (toolbox.jobs.analyze.finish_video). Tasks declare
their CPU threads (and a GPU fraction on CUDA); a task whose worker dies is retried. Output folders
must be on a filesystem every node sees (the segments write their video parts there).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from toolbox.atomic import write_json, write_text
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.output_set import MANIFEST, OutputSet

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}
LIST_SUFFIXES = {".txt", ".lst", ".list"}
ARCHIVE_MARKER = ".deepvis-archive.json"
DEFAULT_SEGMENT_SECONDS = 300.0
GPU_FRACTION = 0.25  # of one GPU per task on CUDA: four workers share a GPU
TASK_RETRIES = 3  # a task whose worker process dies is run again this often
INSTALL_RAY = "Ray is not installed: pip install 'deepvis[ray]' (or pip install 'ray>=2.9')"
KILL_ONCE_ENV = "DEEPVIS_KILL_SEGMENT_ONCE"  # fault injection for tests: path of a marker file


def archive_sources(spec: str) -> list[str] | None:
    """The videos an archive spec names, sorted: a glob (``**`` recurses), a folder holding videos
    (recursively), or a list file (.txt: one source per line, # comments, relative to the file).
    None when ``spec`` is a single source (a video, an image, a folder or glob of images, a camera).
    A glob that matches nothing is a DeepvisError."""
    path = Path(spec).expanduser()
    if any(ch in spec for ch in "*?["):
        matches = sorted(p for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not matches:
            raise DeepvisError(f"'{spec}' matches no files: check the pattern (quote it so the shell leaves it alone)")
        videos = [p for p in matches if Path(p).suffix.lower() in VIDEO_SUFFIXES]
        return videos or None
    if path.is_dir():
        videos = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        return videos or None
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        lines = [line.strip() for line in path.read_text().splitlines()]
        sources = [line for line in lines if line and not line.startswith("#")]
        if not sources:
            raise DeepvisError(f"list file {spec} names no sources: write one video path per line")
        return [s if os.path.isabs(s) or not (path.parent / s).exists() else str(path.parent / s) for s in sources]
    return None


def video_folder_names(sources: list[str]) -> list[str]:
    """One output folder name per source: its path below the sources' common folder, without the
    suffix, '/' written '__' (so a/x.mp4 and b/x.mp4 stay apart); other sources by their name."""
    files = [Path(s) for s in sources]
    try:
        root = Path(os.path.commonpath([str(p.resolve().parent) for p in files]))
    except ValueError:
        root = None
    names = []
    for p in files:
        try:
            relative = p.resolve().relative_to(root) if root is not None else Path(p.name)
        except ValueError:
            relative = Path(p.name)
        names.append("__".join(relative.with_suffix("").parts) or "video")
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def is_complete(folder: Path, source: str) -> bool:
    """The folder holds a committed analyze output set of ``source`` with its report."""
    summary = folder / "summary.json"
    if not ((folder / MANIFEST).is_file() and summary.is_file() and (folder / "report.html").is_file()):
        return False
    try:
        return json.loads(summary.read_text()).get("source") == source
    except (OSError, ValueError):
        return False


def check_archive_folder(out: Path) -> None:
    """An archive's --out must be new, empty, or an earlier archive run's folder."""
    if out.exists() and not out.is_dir():
        raise DeepvisError(f"--out {out} is a file, not a folder: give a new folder name")
    if out.is_dir() and not (out / ARCHIVE_MARKER).is_file() and any(out.iterdir()):
        raise DeepvisError(f"--out {out} already holds files that are not a deepvis archive run: "
                           "give a new or empty folder")


@dataclass
class VideoOutcome:
    source: str
    folder: str
    status: str  # done | skipped | failed
    error: str = ""
    line: str = ""


def summary_line(folder: Path) -> str:
    """'analysed 0.0–0.4 s of 1.0 s, 2 frames, 2 shots: Egyptian cat, espresso' from a video's
    summary.json (the span is what --max-frames left; a stream's full length is unknown)."""
    from toolbox.jobs.report import analysed_span

    summary = json.loads((folder / "summary.json").read_text())
    classes = list(dict.fromkeys(s["top1"] for s in summary["shots"]))
    shown = ", ".join(classes[:4]) + (", ..." if len(classes) > 4 else "")
    shots = len(summary["shots"])
    span = analysed_span(summary)
    analysed = (f"analysed {span}, {summary['frames_processed']} frames" if span is not None  # older summaries:
                else f"{summary['duration_s']:.1f} s, {summary['frames_processed']} frames analysed")  # no span
    return f"{analysed}, {shots} shot{'' if shots == 1 else 's'}: {shown}"


def write_index(out: Path, title: str, outcomes: list[VideoOutcome]) -> Path:
    """``out``/index.html (and index.json): every video's report link and summary line, then the failures."""
    from toolbox.render.report import index_html

    done = [{"source": o.source, "report": f"{o.folder}/report.html", "line": o.line}
            for o in outcomes if o.status != "failed"]
    failed = [{"source": o.source, "error": o.error} for o in outcomes if o.status == "failed"]
    write_json(out / "index.json", {"videos": [o.__dict__ for o in outcomes]})
    return write_text(out / "index.html", index_html({"title": title, "done": done, "failed": failed}))


def analyze_archive(spec: str, sources: list[str], out: str | Path, config: Config, saliency: str | None = None,
                    ray_address: str | None = None, workers: int | None = None, threads: int = 1,
                    segment_seconds: float | None = None, progress: bool = True,
                    metrics: tuple[str, ...] = (), metrics_every: int = 10) -> list[VideoOutcome]:
    """Analyse every source into ``out``/<name>/, skipping complete ones, then write the index.
    ray_address: None runs here, one video after another; "local" starts a local Ray, anything
    else ("auto", "host:port", "ray://host:port") joins an existing cluster. ``metrics``: the
    saliency map's faithfulness metrics on every ``metrics_every``-th frame (here only, not on Ray)."""
    out = Path(out).expanduser()
    check_archive_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / ARCHIVE_MARKER, {"archive": spec})
    names = video_folder_names(sources)
    outcomes = [VideoOutcome(s, n, "skipped" if is_complete(out / n, s) else "todo") for s, n in zip(sources, names)]
    todo = [o for o in outcomes if o.status == "todo"]
    if ray_address is None:
        from toolbox.jobs.analyze import analyze

        for outcome in todo:
            try:
                analyze(outcome.source, out / outcome.folder, config, progress=progress, saliency=saliency,
                        metrics=metrics, metrics_every=metrics_every)
                outcome.status = "done"
            except Exception as error:  # one bad video (even one that trips a decoder bug) must not stop the rest
                outcome.status, outcome.error = "failed", _task_error(error)
    else:
        run_on_ray([(o, out / o.folder) for o in todo], config, saliency, ray_address, workers, threads,
                   segment_seconds or DEFAULT_SEGMENT_SECONDS, progress)
    for outcome in outcomes:
        if outcome.status != "failed":
            outcome.line = summary_line(out / outcome.folder)
    write_index(out, spec, outcomes)
    return outcomes


# -- Ray -------------------------------------------------------------------------------------------
def import_ray():
    try:
        import ray
    except ImportError:
        raise DeepvisError(INSTALL_RAY) from None
    return ray


def _reachable(address: str, timeout: float = 3.0) -> bool:
    """A TCP connection to ``host:port`` (a ``ray://`` prefix is dropped) opens within ``timeout``."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def connect_ray(address: str, cpus: int | None):
    """ray.init for ``address`` ("local": a new local Ray with ``cpus`` CPUs); a session this process
    already holds is reused. An unreachable cluster is a DeepvisError at once (ray.init itself would
    retry for minutes)."""
    ray = import_ray()
    if address != "local":
        resolved = address
        if address == "auto":
            resolved = os.environ.get("RAY_ADDRESS") or _current_cluster_address()
            if resolved is None:
                raise DeepvisError("--ray auto found no running Ray cluster: start one (ray start --head) "
                                   "or give its address, or use --ray alone for a local one")
        if not _reachable(resolved):
            raise DeepvisError(f"cannot reach a Ray cluster at {address}: check the address and that the cluster "
                               "is running (ray status), or use --ray alone for a local one")
    if ray.is_initialized():
        return ray
    options = dict(log_to_driver=False, include_dashboard=False, configure_logging=False)
    try:
        if address == "local":
            ray.init(num_cpus=cpus, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise DeepvisError(f"cannot start or join Ray at {address}: {str(error).splitlines()[0]}") from None
    return ray


def _current_cluster_address() -> str | None:
    """The address ``ray start`` left in its session file on this machine, if any."""
    path = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _segment_task(plan, index: int, config: Config, video_part: str, threads: int):
    """Ray task: one segment (toolbox.jobs.analyze.analyze_segment) with ``threads`` CPU threads."""
    from toolbox.cpu_threads import use_threads
    from toolbox.jobs.analyze import analyze_segment

    marker = os.environ.get(KILL_ONCE_ENV)
    if marker and index == 1 and not os.path.exists(marker):  # tests: this worker dies once mid-run
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    use_threads(threads)
    return analyze_segment(plan, index, config, video_part)


def _finish_task(plan, config: Config, files: OutputSet, threads: int, *segments) -> str:
    """Ray task: merge a video's segments into its staged outputs (toolbox.jobs.analyze.finish_video)."""
    from toolbox.cpu_threads import use_threads
    from toolbox.jobs.analyze import PARTS, finish_video

    use_threads(threads)
    finish_video(plan, list(segments), files, config)
    shutil.rmtree(files.path(PARTS), ignore_errors=True)
    return str(files.staging)


def run_on_ray(jobs: list[tuple[VideoOutcome, Path]], config: Config, saliency: str | None, address: str,
               workers: int | None, threads: int, segment_seconds: float, progress: bool = True) -> None:
    """Analyse each (outcome, folder) as Ray tasks; sets every outcome's status (done | failed) and
    commits each video's folder as soon as its merge task ends."""
    from toolbox.jobs.analyze import PARTS, check_model_options, plan_video
    from toolbox.models.registry import resolve_device

    ray = connect_ray(address, None if workers is None else workers * threads)
    gpu = GPU_FRACTION if resolve_device(config.model.device).type == "cuda" else 0
    segment_task = ray.remote(_segment_task).options(num_cpus=threads, num_gpus=gpu, max_retries=TASK_RETRIES)
    finish_task = ray.remote(_finish_task).options(num_cpus=threads, num_gpus=gpu, max_retries=TASK_RETRIES)
    check_model_options(config, saliency)
    pending: dict = {}
    for outcome, folder in jobs:
        try:
            plan = plan_video(outcome.source, config, saliency, segment_seconds)
            outputs = OutputSet(folder, "analyze")
        except DeepvisError as error:
            outcome.status, outcome.error = "failed", str(error)
            continue
        segments = [segment_task.remote(plan, i, config, str(outputs.path(f"{PARTS}/{i:04d}.mp4")), threads)
                    for i in range(len(plan.segments))]
        pending[finish_task.remote(plan, config, outputs, threads, *segments)] = (outcome, outputs)
    started = time.perf_counter()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        outcome, outputs = pending.pop(ready[0])
        try:
            ray.get(ready[0])
            outputs.commit()
            outcome.status = "done"
        except Exception as error:  # a task's DeepvisError (or crash) arrives wrapped by Ray
            outputs.discard()
            outcome.status, outcome.error = "failed", _task_error(error)
        if progress:
            print(f"[{time.perf_counter() - started:6.1f} s] {outcome.status}: {outcome.source}", flush=True)


def _task_error(error: Exception) -> str:
    """The one line a user should see for a video that failed, here or in a Ray task (which wraps
    the task's exception and keeps it as ``cause``)."""
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, DeepvisError):
        return str(cause)
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[0]}" if text else type(cause).__name__


def analyze_on_ray(source: str, out: str | Path, config: Config, saliency: str | None, address: str,
                   workers: int | None, threads: int, segment_seconds: float | None, progress: bool = True) -> Path:
    """One source on Ray (split into segments) into ``out``; a failure is a DeepvisError."""
    outcome = VideoOutcome(source, Path(out).name, "todo")
    run_on_ray([(outcome, Path(out))], config, saliency, address, workers, threads,
               segment_seconds or DEFAULT_SEGMENT_SECONDS, progress)
    if outcome.status == "failed":
        raise DeepvisError(outcome.error)
    return Path(out)
