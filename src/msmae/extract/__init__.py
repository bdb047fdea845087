"""Pose extraction from video: MediaPipe Holistic -> full holistic ``.pose`` files.

Library API (MediaPipe and OpenCV are imported only when used):

- :func:`extract_video` (one video or frame folder, optional range) -> :class:`Extraction`
  (``xyz`` (T, 543, 3) GISLR order, ``conf``, ``world``, ``fps``, ``width``, ``height``);
- :func:`video_to_sequence` -> a canonical :class:`~msmae.poses.PoseSequence` in one call;
- :func:`run_extraction` -> many clips into a folder of ``.pose`` files, in parallel, resumable,
  shardable (``frame_stride``: Holistic on every n-th frame; ``streams="body,hands"``: without the
  face model); returns the summary written to ``extract_summary.json``;
- :func:`shard_from_env` (``--shard auto``) and :func:`extraction_status` (``--status``) for cluster arrays.
"""

from msmae.extract.cluster import extraction_status, shard_from_env
from msmae.extract.core import DEFAULT_FRAMES_FPS, Extraction, extract_clip, extract_video, video_to_sequence
from msmae.extract.frames import FrameReadError
from msmae.extract.holistic import (HolisticModel, MissingModelError, check_model_files, parse_streams,
                                    required_model_files)
from msmae.extract.runner import parse_shard, run_extraction, shard_of
from msmae.extract.sources import Clip, InputError, find_clips, read_clips_file

__all__ = [
    "Clip", "DEFAULT_FRAMES_FPS", "Extraction", "FrameReadError", "HolisticModel", "InputError",
    "MissingModelError", "check_model_files", "extract_clip", "extract_video", "extraction_status", "find_clips",
    "parse_shard", "parse_streams", "read_clips_file", "required_model_files", "run_extraction", "shard_from_env",
    "shard_of", "video_to_sequence",
]
