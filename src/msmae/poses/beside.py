"""The video beside a pose file: a video with the same name next to it (or in its parent folder) gives the frame
rate and size a ``.npy`` or ``.parquet`` does not store, and is the video ``msmae view`` shows and
``msmae attention`` links from its ELAN file."""

from __future__ import annotations

from pathlib import Path


def find_video_beside(path: Path) -> Path | None:
    """A video with the same stem next to ``path`` or in its parent folder (as the shared data keeps
    ``videos/clip.mp4`` beside ``videos/reference-holistic/clip.npy``), or None."""
    from msmae.media import VIDEO_SUFFIXES

    for folder in (path.parent, path.parent.parent):
        for suffix in VIDEO_SUFFIXES:
            video = folder / f"{path.stem}{suffix}"
            if video.is_file():
                return video
    return None


def video_beside(path: Path) -> dict:
    """fps, width and height of :func:`find_video_beside`'s video, read with OpenCV; empty when there is none
    or OpenCV is not installed."""
    video = find_video_beside(path)
    if video is None:
        return {}
    try:
        import cv2
    except ImportError:
        return {}
    cap = cv2.VideoCapture(str(video))
    try:
        fps, w, h = (cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    if fps > 0 and w > 0 and h > 0:
        return {"fps": float(fps), "width": w, "height": h, "video": str(video)}
    return {}


def fill_from_video(path: Path, fps, width, height) -> tuple[float | None, int | None, int | None, str | None]:
    """What the caller did not give (fps, width, height), from a video beside the file when there is one."""
    if fps is not None and width is not None and height is not None:
        return fps, width, height, None
    v = video_beside(path)
    if not v:
        return fps, width, height, None
    return (fps if fps is not None else v["fps"], width if width is not None else v["width"],
            height if height is not None else v["height"], v["video"])
