"""MediaPipe Holistic (``mediapipe==0.10.14``, the ``extract`` extra) with the reference settings.

The reference keypoints (``../shared/data/videos/reference-holistic``) were made with
``static_image_mode=False``, ``refine_face_landmarks=False``, ``model_complexity=1`` and every
other option at MediaPipe's default, on frames read with OpenCV and converted BGR -> RGB.
:class:`HolisticModel` builds exactly that graph, so the same frames give bit-identical landmarks.

Output per frame, in GISLR order (the order of the Kaggle GISLR parquet files and of the
reference ``.npy`` files): face 468 (478 with ``refine_face``), left hand 21, pose 33, right hand
21; x, y normalised image coordinates, z as MediaPipe returns it, NaN where a part was not detected.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

NUM_POSE, NUM_HAND, NUM_FACE, NUM_FACE_REFINED = 33, 21, 468, 478

# Where MediaPipe keeps the models that are not in the wheel (the Python solution API would try
# to download them from here on first use; msmae never downloads, it tells the user instead).
MODEL_URL_PREFIX = "https://storage.googleapis.com/mediapipe-assets/"

POSE_LANDMARK_MODELS = {
    0: "mediapipe/modules/pose_landmark/pose_landmark_lite.tflite",
    1: "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
    2: "mediapipe/modules/pose_landmark/pose_landmark_heavy.tflite",
}
# Files the holistic CPU graph opens whatever the options (checked with strace on 0.10.14).
_COMMON_FILES = (
    "mediapipe/modules/holistic_landmark/holistic_landmark_cpu.binarypb",
    "mediapipe/modules/pose_detection/pose_detection.tflite",
    "mediapipe/modules/holistic_landmark/hand_recrop.tflite",
    "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
    "mediapipe/modules/hand_landmark/handedness.txt",
    "mediapipe/modules/face_detection/face_detection_short_range.tflite",
)
FACE_MODELS = {
    False: "mediapipe/modules/face_landmark/face_landmark.tflite",
    True: "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",
}


class MissingModelError(RuntimeError):
    """A MediaPipe model file that the chosen settings need is not installed."""


def num_points(refine_face: bool = False) -> int:
    """Points per frame in GISLR order: 543, or 553 with the refined face mesh."""
    return (NUM_FACE_REFINED if refine_face else NUM_FACE) + 2 * NUM_HAND + NUM_POSE


def mediapipe_root() -> Path:
    """The folder that holds the ``mediapipe`` package (model paths are relative to it)."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.origin:
        raise MissingModelError(
            "MediaPipe is not installed: pip install 'msmae[extract]' (mediapipe==0.10.14)")
    return Path(spec.origin).resolve().parent.parent


# The two stream sets msmae extract offers: full Holistic, or its graph without the face nodes.
STREAM_SETS = {"all": ("body", "left_hand", "right_hand", "face"),
               "body,hands": ("body", "left_hand", "right_hand")}
_FACE_ONLY_FILES = ("mediapipe/modules/face_detection/face_detection_short_range.tflite",)


def parse_streams(text: str) -> str:
    """``--streams`` value -> a key of :data:`STREAM_SETS` (``all`` or ``body,hands``)."""
    parts = {p.strip() for p in str(text).lower().split(",") if p.strip()}
    if parts in ({"all"}, {"body", "hands", "face"}):
        return "all"
    if parts == {"body", "hands"}:
        return "body,hands"
    raise ValueError(f"--streams must be 'all' (body, hands and face: full Holistic) or 'body,hands' "
                     f"(Holistic without its face model), got {text!r}")


def required_model_files(model_complexity: int = 1, refine_face: bool = False, face: bool = True) -> list[str]:
    """Files (relative to :func:`mediapipe_root`) that Holistic opens with these settings."""
    if model_complexity not in POSE_LANDMARK_MODELS:
        raise ValueError(f"model_complexity must be 0, 1 or 2, got {model_complexity}")
    if not face:
        return [f for f in _COMMON_FILES if f not in _FACE_ONLY_FILES] + [POSE_LANDMARK_MODELS[model_complexity]]
    return [*_COMMON_FILES, POSE_LANDMARK_MODELS[model_complexity], FACE_MODELS[bool(refine_face)]]


def check_model_files(model_complexity: int = 1, refine_face: bool = False, face: bool = True) -> None:
    """Raise :class:`MissingModelError` naming every missing file and how to provide it."""
    root = mediapipe_root()
    missing = [f for f in required_model_files(model_complexity, refine_face, face)
               if not (root / f).is_file()]
    if not missing:
        return
    lines = [f"model_complexity={model_complexity}{' with refine_face' if refine_face else ''} needs "
             f"MediaPipe model files that are not installed (mediapipe 0.10.14 ships only the "
             f"model_complexity=1 pose model; msmae never downloads models):"]
    for f in missing:
        lines.append(f"  missing {root / f}: download {MODEL_URL_PREFIX}{Path(f).name} "
                     f"and save it at exactly that path")
    raise MissingModelError("\n".join(lines))


@dataclass(frozen=True)
class HolisticSettings:
    """MediaPipe Holistic options exposed by msmae (everything else stays at MediaPipe's default,
    as in the reference extraction)."""

    model_complexity: int = 1  # pose landmark model: 0 lite, 1 full (in the wheel), 2 heavy (the paper's)
    refine_face: bool = False  # 478-point face mesh with irises (refine_face_landmarks)
    face: bool = True  # False: Holistic's graph without its face nodes (streams body,hands)


HOLISTIC_GRAPH = "mediapipe/modules/holistic_landmark/holistic_landmark_cpu.binarypb"
# Nodes of the holistic graph that only serve the face (0.10.14: the graph is PoseLandmarkCpu,
# HandLandmarksLeftAndRightCpu (hand regions from the pose), and these two).
FACE_NODES = ("SplitNormalizedLandmarkListCalculator", "FaceLandmarksFromPoseCpu")


def body_hands_graph():
    """MediaPipe's own holistic CPU graph (from the wheel) with the face nodes removed: pose landmarks,
    then both hands from regions the pose gives (``HandLandmarksLeftAndRightCpu``, as in Holistic, so
    left and right stay tied to the body), and no face detection or face mesh."""
    from mediapipe.framework import calculator_pb2

    graph = calculator_pb2.CalculatorGraphConfig()
    graph.ParseFromString((mediapipe_root() / HOLISTIC_GRAPH).read_bytes())
    found = [n.calculator for n in graph.node if n.calculator in FACE_NODES]
    if sorted(found) != sorted(FACE_NODES):
        raise MissingModelError(f"this MediaPipe's holistic graph has no face nodes {FACE_NODES} to remove "
                                f"(found {[n.calculator for n in graph.node]}); --streams body,hands needs "
                                f"mediapipe 0.10.14")
    kept = [n for n in graph.node if n.calculator not in FACE_NODES]
    del graph.node[:]
    graph.node.extend(kept)
    outputs = [o for o in graph.output_stream if not o.startswith("FACE_LANDMARKS:")]
    del graph.output_stream[:]
    graph.output_stream.extend(outputs)
    sides = [p for p in graph.input_side_packet if not p.startswith("REFINE_FACE_LANDMARKS:")]
    del graph.input_side_packet[:]
    graph.input_side_packet.extend(sides)
    return graph


def _body_hands_solution(model_complexity: int):
    """A MediaPipe solution running :func:`body_hands_graph` with Holistic's own options."""
    from mediapipe.python.solution_base import SolutionBase

    return SolutionBase(
        graph_config=body_hands_graph(),
        side_inputs={"model_complexity": model_complexity, "smooth_landmarks": True,
                     "enable_segmentation": False, "smooth_segmentation": True, "use_prev_landmarks": True},
        calculator_params={  # the thresholds mediapipe.solutions.holistic.Holistic sets (defaults 0.5)
            "poselandmarkcpu__posedetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": 0.5,
            "poselandmarkcpu__poselandmarkbyroicpu__tensorstoposelandmarksandsegmentation__"
            "ThresholdingCalculator.threshold": 0.5},
        outputs=["pose_landmarks", "pose_world_landmarks", "left_hand_landmarks", "right_hand_landmarks"])


def _mute_native_stderr() -> int | None:
    """Point file descriptor 2 at /dev/null; return a copy of the old one (None if impossible)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # pragma: no cover - no fd 2
        return None
    os.dup2(devnull, 2)
    os.close(devnull)
    return saved


def _unmute_native_stderr(saved: int | None) -> None:
    if saved is not None:
        os.dup2(saved, 2)
        os.close(saved)


class HolisticModel:
    """One MediaPipe Holistic graph in video mode (tracking across the frames of one clip).

    Call :meth:`reset` between clips: it restarts the graph, so the next clip starts with no
    tracking state, exactly as with a freshly built model.

    quiet: MediaPipe's C++ code prints about ten log lines on stderr each time its graph starts
    (TFLite delegate, "Feedback manager ..."), once per clip; they are dropped (file descriptor 2
    is muted from the start of the graph to the end of its first frame) unless debug logging is on.
    """

    def __init__(self, *, model_complexity: int = 1, refine_face: bool = False, face: bool = True,
                 quiet: bool | None = None) -> None:
        check_model_files(model_complexity, refine_face, face)
        try:
            from mediapipe.python.solutions.holistic import Holistic
        except ImportError as e:  # pragma: no cover - the extract extra is missing
            raise MissingModelError(
                f"MediaPipe is not importable ({e}): pip install 'msmae[extract]'") from e
        self.settings = HolisticSettings(model_complexity=model_complexity, refine_face=refine_face, face=face)
        self.num_points = num_points(refine_face)
        self._num_face = NUM_FACE_REFINED if refine_face else NUM_FACE
        self._quiet = (not log.isEnabledFor(logging.DEBUG)) if quiet is None else quiet
        self._muted = _mute_native_stderr() if self._quiet else None
        try:
            if face:
                self._graph = Holistic(static_image_mode=False, model_complexity=model_complexity,
                                       refine_face_landmarks=refine_face)
            else:
                self._graph = _body_hands_solution(model_complexity)
        except BaseException:
            self._unmute()
            raise
        self._fresh = True

    def _unmute(self) -> None:
        _unmute_native_stderr(self._muted)
        self._muted = None

    def reset(self) -> None:
        """Forget tracking state (start a new clip)."""
        if not self._fresh:
            if self._quiet and self._muted is None:
                self._muted = _mute_native_stderr()
            self._graph.reset()
            self._fresh = True

    def skip(self, frames: int) -> None:
        """Advance the graph's clock by ``frames`` source frames that are not processed (a frame stride):
        MediaPipe's tracking and landmark smoothing see the time that really passed between the frames,
        on the same scale as when every frame is processed (the solution API's 33.333 ms per frame)."""
        if frames > 0 and not self._fresh:
            self._graph._simulated_timestamp += 33333 * int(frames)

    def process(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One RGB frame (H, W, 3) uint8 -> (xyz (K, 3), conf (K,), world (33, 3)), float32, K = 543 or 553.

        xyz is in GISLR order with NaN where a part was not detected; conf is MediaPipe's
        visibility for pose points, 1 for detected face and hand points, 0 where not detected;
        world is ``pose_world_landmarks`` (metres, hip-centred), NaN when no pose.
        """
        self._fresh = False
        try:
            res = self._graph.process(rgb) if self.settings.face else self._graph.process({"image": rgb})
        finally:  # the graph has opened all its calculators once a frame went through
            self._unmute()
        nf = self._num_face
        xyz = np.full((self.num_points, 3), np.nan, np.float32)
        conf = np.zeros(self.num_points, np.float32)
        world = np.full((NUM_POSE, 3), np.nan, np.float32)
        parts = ((getattr(res, "face_landmarks", None), 0, nf), (res.left_hand_landmarks, nf, NUM_HAND),
                 (res.pose_landmarks, nf + NUM_HAND, NUM_POSE),
                 (res.right_hand_landmarks, nf + NUM_HAND + NUM_POSE, NUM_HAND))
        for lms, start, n in parts:
            if lms is None:
                continue
            pts = lms.landmark
            if len(pts) != n:  # never seen; guards the layout against a changed MediaPipe
                raise RuntimeError(f"MediaPipe returned {len(pts)} landmarks where {n} were expected")
            xyz[start:start + n] = [(p.x, p.y, p.z) for p in pts]
            if n == NUM_POSE:
                conf[start:start + n] = [p.visibility for p in pts]
            else:
                conf[start:start + n] = 1.0
        if res.pose_world_landmarks is not None:
            world[:] = [(p.x, p.y, p.z) for p in res.pose_world_landmarks.landmark]
        return xyz, conf, world

    def close(self) -> None:
        self._unmute()
        self._graph.close()

    def __enter__(self) -> "HolisticModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
