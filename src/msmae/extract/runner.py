"""Corpus-scale extraction: many clips, a pool of worker processes, resumable and shardable.

- Each worker process holds one MediaPipe Holistic graph and extracts whole clips (a clip's frames
  depend on each other through tracking, so one clip never spans two workers).
- Outputs ``OUT/<clip name>.pose`` are written atomically (temporary file + rename). A later run
  skips an existing output only when it is a complete ``.pose`` (header, every frame it declares,
  msmae's metadata) made with the same frame stride and streams; a 0-byte or truncated file (e.g.
  copied half-way, or cut by a full disk) is extracted again. Left-over temporary files of an
  interrupted run are removed when their clip is extracted again.
- Worker processes exit when the main process dies (a parent-death signal on Linux, and a
  watchdog on the parent's pid everywhere), so ``kill -9`` of ``msmae extract`` stops them too.
- ``shard=(i, n)`` keeps the clips whose name hashes (CRC-32) to ``i`` modulo ``n``: a stable
  split that does not depend on which other clips exist, so cluster array jobs never overlap.
- A clip that fails (unreadable video, empty range, a MediaPipe error) is recorded with its reason
  and the others go on. If a worker process dies (e.g. a decoder crash), the clips it may have been
  working on are retried one at a time in fresh processes, so the culprit is found and the
  innocent ones are extracted.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from msmae.extract.core import DEFAULT_FRAMES_FPS, extract_clip
from msmae.extract.holistic import STREAM_SETS, HolisticModel, check_model_files, parse_streams
from msmae.extract.sources import Clip, InputError, find_clips, read_clips_file
from msmae.utils import exit_with_parent

log = logging.getLogger(__name__)

SUMMARY_NAME = "extract_summary.json"


def default_workers() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (I 0-based, ``0 <= I < N``) -> (I, N)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 0/8), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= I < N (I is 0-based, e.g. $SLURM_ARRAY_TASK_ID)")
    return i, n


def shard_of(name: str, num_shards: int) -> int:
    """The shard a clip belongs to (stable across runs, machines and corpus changes)."""
    return zlib.crc32(name.encode("utf-8")) % num_shards


def summary_path(out_dir: Path, shard: tuple[int, int] | None) -> Path:
    """``extract_summary.json``, or ``extract_summary.shard-I-of-N.json`` for a shard."""
    if shard is None:
        return out_dir / SUMMARY_NAME
    return out_dir / f"extract_summary.shard-{shard[0]}-of-{shard[1]}.json"


def output_path(out_dir: Path, clip: Clip) -> Path:
    from msmae.extract.sources import check_clip_name

    return out_dir / f"{check_clip_name(clip.name, clip)}.pose"


def _existing_problem(out: Path, frame_stride: int, streams: str) -> str | None:
    """Why an existing output cannot be skipped: incomplete (extract again), or made with other
    settings (reported, kept); None = complete and made the same way."""
    from msmae.poses.posemeta import check_pose_file
    from msmae.poses.sequence import PoseDataError

    try:
        meta = check_pose_file(out)
    except PoseDataError as e:
        return f"existing output is incomplete: {e}"
    have_stride = int(meta.get("frame_stride", 1))
    have_streams = "all" if "face" in meta.get("streams", ["face"]) else "body,hands"
    if (have_stride, have_streams) != (frame_stride, streams):
        return (f"made with --frame-stride {have_stride} --streams {have_streams}, not --frame-stride "
                f"{frame_stride} --streams {streams}")
    return None


def _remove_stale_temps(out: Path) -> None:
    """Temporary files an interrupted run left for this output (see ``msmae.utils.atomic_path``)."""
    if out.parent.is_dir():
        for tmp in out.parent.glob(f".{out.name}.*.tmp"):
            try:
                tmp.unlink()
            except OSError:  # pragma: no cover - raced with another process
                pass


# ----------------------------------------------------------------------------------- worker side
@dataclass(frozen=True)
class _Job:
    index: int
    clip: Clip
    out: Path


@dataclass(frozen=True)
class _Options:
    model_complexity: int
    refine_face: bool
    frames_fps: float
    seek: bool
    frame_stride: int = 1
    streams: str = "all"  # a key of STREAM_SETS


_worker: dict = {}  # per-process state: the model, the options and the progress queue


def _init_worker(options: _Options, progress_q, parent_pid: int | None = None) -> None:
    if parent_pid is not None:
        exit_with_parent(parent_pid)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _worker.update(options=options, queue=progress_q, model=None)


def _run_job(job: _Job) -> dict:
    """Extract one clip and write its .pose; never raises for a bad clip (returns the reason)."""
    opts: _Options = _worker["options"]
    q = _worker["queue"]
    started = time.perf_counter()
    if q is not None:
        q.put(("start", job.index, os.getpid()))
    frames = 0

    def on_frames(n: int) -> None:
        nonlocal frames
        frames += n
        if q is not None:
            q.put(("frames", job.index, n))

    try:
        if _worker["model"] is None:
            _worker["model"] = HolisticModel(model_complexity=opts.model_complexity,
                                             refine_face=opts.refine_face, face=opts.streams == "all")
        _remove_stale_temps(job.out)
        ex = extract_clip(job.clip, _worker["model"], frames_fps=opts.frames_fps, seek=opts.seek,
                          on_frames=on_frames, frame_stride=opts.frame_stride)
        ex.write(job.out)
        result = {"status": "done", "frames": ex.num_frames}
    except Exception as e:  # one clip's failure must not stop the others
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not isinstance(e, (OSError, ValueError, RuntimeError)):
            reason = f"{type(e).__name__}: {reason}"
        log.debug("clip %s failed", job.clip.describe(), exc_info=True)
        result = {"status": "failed", "reason": reason, "frames": frames}
    result.update(index=job.index, seconds=time.perf_counter() - started)
    if q is not None:
        q.put(("end", job.index, os.getpid()))
    return result


# ----------------------------------------------------------------------------------- main side
@dataclass
class _Progress:
    """Frame progress bar whose total grows as clips are opened (no up-front probing)."""

    num_clips: int
    enabled: bool
    bar: object = None
    frames: int = 0  # frames processed, finished clips and clips in progress
    finished_frames: int = 0  # frames of finished clips
    clips_done: int = 0

    def __post_init__(self) -> None:
        from msmae.progress import progress_bar

        self.bar = progress_bar(total=None, unit="frame", disable=not self.enabled, dynamic_ncols=True,
                        desc="extract", smoothing=0.05)

    def update(self, n: int) -> None:
        self.frames += n
        self.bar.update(n)

    def clip_finished(self, frames: int) -> None:
        self.clips_done += 1
        self.finished_frames += frames
        mean = self.finished_frames / self.clips_done  # clips still to finish are guessed this long
        self.bar.total = max(self.frames, int(self.finished_frames + mean * (self.num_clips - self.clips_done)))
        self.bar.set_postfix_str(f"clips {self.clips_done}/{self.num_clips}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _drain(q, progress: _Progress, running: dict) -> None:
    while True:
        try:
            kind, index, value = q.get_nowait()
        except (queue.Empty, OSError, EOFError):
            return
        if kind == "start":
            running[index] = value
        elif kind == "end":
            running.pop(index, None)
        elif kind == "frames":
            progress.update(value)


def _run_pool(jobs: list[_Job], options: _Options, workers: int, progress: _Progress,
              results: dict[int, dict], task: Callable[[_Job], dict] = _run_job) -> list[_Job]:
    """Run ``task`` over ``jobs`` in a pool; return the jobs that were running when a worker died."""
    ctx = mp.get_context("spawn")  # a clean interpreter: no inherited threads or MediaPipe state
    q = ctx.Queue()
    running: dict[int, int] = {}
    todo = list(jobs)
    todo.reverse()  # pop() from the end = submit in the given order
    by_index = {j.index: j for j in jobs}
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(options, q, os.getpid()))
    futures: dict[Future, _Job] = {}
    suspects: list[_Job] = []
    try:
        while todo or futures:
            while todo and len(futures) < workers + 2:  # a short queue: cheap to re-plan on a crash
                job = todo.pop()
                futures[pool.submit(task, job)] = job
            done, _ = wait(list(futures), timeout=0.25, return_when=FIRST_COMPLETED)
            _drain(q, progress, running)
            broken = False
            for fut in done:
                job = futures.pop(fut)
                try:
                    res = fut.result()
                except BrokenProcessPool:
                    broken = True
                    futures[fut] = job  # handled below with the others
                    continue
                results[job.index] = res
                progress.clip_finished(res.get("frames", 0))
            if broken:
                time.sleep(0.2)
                _drain(q, progress, running)
                in_flight = {j.index for j in futures.values()}
                # Clips a worker had started; if no start message got out before the crash, all of
                # the queued ones are suspects (retried alone: slower, never wrong).
                suspect_ids = (set(running) & in_flight) or in_flight
                suspects.extend(by_index[i] for i in sorted(suspect_ids))
                # Everything else that was queued goes back to the front of the list.
                todo.extend(reversed([j for j in futures.values() if j.index not in suspect_ids]))
                log.warning("a worker process died; %d clip(s) it may have been on will be retried alone",
                            len(suspect_ids))
                futures.clear()
                running.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                           initargs=(options, q, os.getpid()))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    q.close()
    q.join_thread()
    return suspects


def _run_alone(job: _Job, options: _Options, progress: _Progress, results: dict[int, dict],
               task: Callable[[_Job], dict] = _run_job) -> None:
    """Retry one clip alone in a fresh process; if that process dies too, the clip failed."""
    done: dict[int, dict] = {}
    again = _run_pool([job], options, 1, progress, done, task)
    if again:
        results[job.index] = {"status": "failed", "index": job.index, "frames": 0, "seconds": 0.0,
                              "reason": "the worker process died while extracting this clip, also "
                                        "when retried alone (a decoder or MediaPipe crash on this file?)"}
        progress.clip_finished(0)
    else:
        results.update(done)


def _run_inline(jobs: list[_Job], options: _Options, progress: _Progress, results: dict[int, dict]) -> None:
    """workers=0: everything in this process (tests, debugging)."""
    _init_worker(options, None)
    try:
        for job in jobs:
            res = _run_job(job)
            progress.update(res.get("frames", 0))
            results[job.index] = res
            progress.clip_finished(res.get("frames", 0))
    finally:
        if _worker.get("model") is not None:
            _worker["model"].close()
        _worker.clear()


def collect_clips(inputs: Sequence[str | os.PathLike], clips_file: str | os.PathLike | None
                  ) -> tuple[list[Clip], list[dict]]:
    """INPUTs (+ an optional clips file) -> (clips, missing rows of the clips file)."""
    if clips_file is None:
        if not inputs:
            raise InputError("nothing to extract: give at least one INPUT (video, folder or list file)")
        return find_clips(inputs), []
    cl = read_clips_file(clips_file, [Path(p) for p in inputs])
    if not cl.clips:
        first = cl.missing[0]["reason"] if cl.missing else "the file lists no clips"
        raise InputError(f"{clips_file}: none of its {len(cl.missing)} clips can be extracted ({first})")
    return cl.clips, cl.missing


def run_extraction(inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike, *,
                   workers: int | None = None, shard: tuple[int, int] | str | None = None,
                   clips: str | os.PathLike | None = None, frames_fps: float = DEFAULT_FRAMES_FPS,
                   model_complexity: int = 1, refine_face: bool = False, overwrite: bool = False,
                   seek: bool = True, progress: bool = True, frame_stride: int = 1,
                   streams: str = "all") -> dict:
    """Extract every clip of ``inputs`` (and ``clips``, a clips file) into ``out_dir``.

    workers: worker processes (default: the CPU cores; 0 = in this process, no pool).
    shard: ``(i, n)`` or ``"i/n"``: only the clips of shard i of n.
    overwrite: re-extract clips whose ``.pose`` already exists (default: skip complete ones).
    frame_stride: Holistic on every n-th frame only (``.pose`` fps = source fps / n).
    streams: ``"all"`` (full Holistic) or ``"body,hands"`` (Holistic without its face model; the
        ``.pose`` has no face component).
    Returns the summary, also written to ``out_dir/extract_summary.json`` (or
    ``extract_summary.shard-I-of-N.json``): ``done`` and ``skipped`` (output paths relative to
    ``out_dir``), ``failed`` = [{``path``, ``reason``, ``name``}], ``missing`` (clips-file rows
    without a video), counts, frames and timing.
    Raises :class:`InputError` or :class:`MissingModelError` before starting when the inputs or
    the model files are not usable.
    """
    from msmae.utils import atomic_write_json

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    if isinstance(shard, str):
        shard = parse_shard(shard)
    if shard is not None:
        parse_shard(f"{shard[0]}/{shard[1]}")
    if not (frames_fps > 0):
        raise InputError(f"the frame-folder fps must be positive, got {frames_fps}")
    if int(frame_stride) != frame_stride or frame_stride < 1:
        raise InputError(f"--frame-stride must be a whole number >= 1, got {frame_stride}")
    frame_stride = int(frame_stride)
    try:
        streams = parse_streams(streams)
    except ValueError as e:
        raise InputError(str(e)) from None
    if refine_face and streams != "all":
        raise InputError("--refine-face needs the face: use it with --streams all")
    check_model_files(model_complexity, refine_face, streams == "all")  # fail before any work, never download
    all_clips, missing = collect_clips(list(inputs), clips)
    if shard is not None:
        all_clips = [c for c in all_clips if shard_of(c.name, shard[1]) == shard[0]]
        missing = [m for m in missing if shard_of(m["name"], shard[1]) == shard[0]]
    out_dir.mkdir(parents=True, exist_ok=True)

    skipped, jobs, results = [], [], {}
    for c in all_clips:
        out = output_path(out_dir, c)
        problem = None if overwrite or not out.exists() else _existing_problem(out, frame_stride, streams)
        if out.exists() and not overwrite and problem is None:
            skipped.append(c)
            continue
        job = _Job(index=len(jobs), clip=c, out=out)
        jobs.append(job)
        if problem and problem.startswith("made with"):  # another extraction's file: never replaced silently
            results[job.index] = {"status": "failed", "frames": 0, "seconds": 0.0, "index": job.index,
                                  "reason": f"{out} exists, {problem}; --overwrite replaces it"}
        elif problem:
            log.warning("%s; extracting it again", problem)
    to_run = [j for j in jobs if j.index not in results]
    workers = default_workers() if workers is None else int(workers)
    workers = min(workers, len(to_run)) if workers > 0 else 0
    log.info("%d clips%s: %d to extract, %d already done%s; %d worker(s)", len(all_clips),
             f" in shard {shard[0]}/{shard[1]}" if shard else "", len(to_run), len(skipped),
             f", {len(missing)} without a video" if missing else "", max(workers, 1))

    options = _Options(model_complexity=model_complexity, refine_face=refine_face,
                       frames_fps=float(frames_fps), seek=seek, frame_stride=frame_stride, streams=streams)
    bar = _Progress(num_clips=len(to_run), enabled=progress and bool(to_run))
    interrupted = False
    ordered = sorted(to_run, key=lambda j: -j.clip.size_hint())  # big clips first: less idle at the end
    try:
        if workers == 0:
            _run_inline(ordered, options, bar, results)
        elif to_run:
            for job in _run_pool(ordered, options, workers, bar, results):
                _run_alone(job, options, bar, results)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        bar.close()
        summary = _summary(out_dir, jobs, skipped, results, missing, shard, interrupted,
                           time.perf_counter() - t0, options, max(workers, 1))
        atomic_write_json(summary_path(out_dir, shard), summary)
    return summary


def _summary(out_dir: Path, jobs: list[_Job], skipped: list[Clip], results: dict[int, dict],
             missing: list[dict], shard, interrupted: bool, seconds: float, options: _Options,
             workers: int) -> dict:
    done, failed, frames = [], [], 0
    for job in jobs:
        res = results.get(job.index)
        if res is None:
            continue
        frames += int(res.get("frames", 0)) if res["status"] == "done" else 0
        if res["status"] == "done":
            done.append(f"{job.clip.name}.pose")
        else:
            failed.append({"path": job.clip.describe(), "reason": res["reason"], "name": job.clip.name})
    return {
        "out": str(out_dir),
        "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
        "done": done,
        "skipped": [f"{c.name}.pose" for c in skipped],
        "failed": failed,
        "missing": missing,
        "not_run": len(jobs) - len(results),
        "interrupted": interrupted,
        "frames": frames,
        "seconds": round(seconds, 3),
        "frames_per_s": round(frames / seconds, 3) if seconds > 0 else 0.0,
        "workers": workers,
        "settings": {"model_complexity": options.model_complexity, "refine_face": options.refine_face,
                     "static_image_mode": False, "frames_fps": options.frames_fps, "seek": options.seek,
                     "frame_stride": options.frame_stride, "streams": list(STREAM_SETS[options.streams])},
    }
