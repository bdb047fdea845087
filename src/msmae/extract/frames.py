"""Frames of one clip, as RGB arrays, decoded by OpenCV in a background thread.

Both sources give the exact pixels of the reference extraction: videos are decoded by
``cv2.VideoCapture`` and images read by ``cv2.imread`` (both BGR), then converted with
``cv2.cvtColor(..., COLOR_BGR2RGB)``. Decoding and colour conversion run in a thread that
stays a few frames ahead of MediaPipe (OpenCV releases the GIL while it works), so the model
rarely waits for a frame. Nothing is resized.

Clip ranges are in frames, 0-based, ``[start, stop)``. A video clip that starts later than its
first frame is reached by seeking (``CAP_PROP_POS_FRAMES``, which OpenCV makes frame-accurate by
decoding forward from the previous key frame); if OpenCV reports another position after the seek,
or with ``seek=False``, the frames before the start are decoded and dropped instead.
"""

from __future__ import annotations

import logging
import math
import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ts")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
PREFETCH_FRAMES = 8  # frames decoded ahead of MediaPipe (8 x 720p RGB = 22 MB)


class FrameReadError(RuntimeError):
    """A video or frame folder that cannot be read; the message names the file and the problem."""


@dataclass
class SourceInfo:
    """What a source says about itself before decoding."""

    fps: float  # frames per second (container rate for videos, the given rate for frame folders)
    width: int  # frame width in pixels
    height: int  # frame height in pixels
    num_frames: int  # frame count from the header (videos: may be off by a few) or image count


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _natural_key(name: str) -> list:
    """``images2.png`` before ``images10.png``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, in natural order of their names."""
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image(p) and not p.name.startswith(".")),
                  key=lambda p: _natural_key(p.name))


def frame_range(start_s: float | None, end_s: float | None, fps: float) -> tuple[int, int | None]:
    """Seconds -> frame range ``[start, stop)``: the frames whose time ``i / fps`` lies in
    ``[start_s, end_s)``. ``None`` means from the first / to the last frame."""
    eps = 1e-6  # 12.97 s * 25 fps is 324.24999.. in floating point; keep exact products exact
    start = 0 if start_s is None else max(0, math.ceil(start_s * fps - eps))
    stop = None if end_s is None else max(0, math.ceil(end_s * fps - eps))
    return start, stop


# --------------------------------------------------------------------------------- probing
def probe_video(path: Path) -> SourceInfo:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise FrameReadError(f"{path}: cannot open video (not a video file, truncated, or a codec "
                                 f"OpenCV cannot decode)")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    if not (math.isfinite(fps) and fps > 0):
        raise FrameReadError(f"{path}: the video has no usable frame rate ({fps})")
    if width <= 0 or height <= 0:
        raise FrameReadError(f"{path}: the video has no frame size")
    return SourceInfo(fps=fps, width=width, height=height, num_frames=max(count, 0))


def probe_frames(folder: Path, fps: float) -> SourceInfo:
    import cv2

    images = list_images(folder)
    if not images:
        raise FrameReadError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    first = cv2.imread(str(images[0]), cv2.IMREAD_COLOR)
    if first is None:
        raise FrameReadError(f"{images[0]}: cannot read image")
    return SourceInfo(fps=float(fps), width=first.shape[1], height=first.shape[0], num_frames=len(images))


def probe(path: Path, frames_fps: float) -> SourceInfo:
    """Probe a video file or a frame folder."""
    if path.is_dir():
        return probe_frames(path, frames_fps)
    if not path.exists():
        raise FrameReadError(f"{path}: no such file")
    return probe_video(path)


# --------------------------------------------------------------------------------- decoding
def _video_frames(path: Path, start: int, stop: int | None, seek: bool, step: int = 1) -> Iterator[np.ndarray]:
    """BGR frames ``start, start + step, ...`` (before ``stop``) of a video; the frames in between are
    decoded (later frames depend on them) but not converted (``grab`` without ``retrieve``)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise FrameReadError(f"{path}: cannot open video")
        if start > 0 and seek:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            if int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) != start:  # seek not trusted: decode through
                log.debug("%s: seek to frame %d not exact, decoding from the start", path, start)
                cap.release()
                cap = cv2.VideoCapture(str(path))
                seek = False
        i = start if (start > 0 and seek) else 0
        while i < start:  # drop the frames before the clip (grab decodes without converting)
            if not cap.grab():
                raise FrameReadError(f"{path}: the clip starts at frame {start} but the video ends at "
                                     f"frame {i}")
            i += 1
        while stop is None or i < stop:
            if (i - start) % step:
                if not cap.grab():
                    break
                i += 1
                continue
            ok, bgr = cap.read()
            if not ok:
                break
            yield bgr
            i += 1
    finally:
        cap.release()


def _image_frames(folder: Path, start: int, stop: int | None, step: int = 1) -> Iterator[np.ndarray]:
    import cv2

    images = list_images(folder)[start:stop:step]
    size = None
    for p in images:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FrameReadError(f"{p}: cannot read image")
        if size is None:
            size = bgr.shape
        elif bgr.shape != size:
            raise FrameReadError(f"{p}: image size {bgr.shape[1]}x{bgr.shape[0]} differs from the first "
                                 f"frame's {size[1]}x{size[0]}")
        yield bgr


def read_rgb_frames(path: Path, *, start: int = 0, stop: int | None = None, seek: bool = True,
                    prefetch: int = PREFETCH_FRAMES, step: int = 1) -> Iterator[np.ndarray]:
    """RGB frames (H, W, 3) uint8 of a video or frame folder: frames ``start, start + step, ...`` of
    ``[start, stop)`` (frame folders read only those images).

    Decoding runs in a background thread ``prefetch`` frames ahead; errors it meets are raised
    here, in the consumer. Closing the generator early stops the thread.
    """
    import cv2

    if step < 1:
        raise ValueError(f"the frame step must be >= 1, got {step}")
    source = (_image_frames(path, start, stop, step) if path.is_dir()
              else _video_frames(path, start, stop, seek, step))
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop_event = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop_event.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for bgr in source:
                if not put(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)):
                    return
            put(done)
        except BaseException as e:  # handed to the consumer
            put(e)
        finally:
            source.close()

    thread = threading.Thread(target=produce, name=f"decode {path.name}", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop_event.set()
        thread.join(timeout=5)
