"""The body of the SYNTHETIC signer (:mod:`msmae.poses.synthetic`): proportions, a 3D hand model with named
handshapes, wrist locations, 2-link arm kinematics, a 112-point face and detection dropouts. Lengths are
in shoulder widths (SW). Nothing here comes from a real person."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------- body geometry (SW)
UPPER_ARM = 0.85  # projected shoulder-elbow length (real clips: 0.8-0.95 SW)
FOREARM = 0.68  # projected elbow-wrist length (real clips: 0.5-0.7 SW)
HAND_LENGTH = 0.42  # wrist to the tip of the straight middle finger
FACE_WIDTH = 0.45  # ear to ear (face-mesh 234 to 454)
NOSE_HEIGHT = 0.57  # nose tip above the mid-shoulder point
SHOULDER = np.array([-0.5, 0.0])  # the arm's shoulder in "right-arm space" (see _ArmPlan)
FRAME_SIZES = ((1280, 720), (1920, 1080), (640, 480), (1080, 1080), (720, 720))

# ----------------------------------------------------------------------------- hand model
# Local hand frame, unit = HAND_LENGTH: x to the thumb side, y along the fingers, z the palm
# normal (fingers curl towards +z). Right hand; the left hand is its mirror image.
_MCP = np.array([[0.12, 0.46, 0.0], [0.035, 0.47, 0.0], [-0.05, 0.45, 0.0], [-0.125, 0.41, 0.0]])
_SEGMENTS = np.array([[0.25, 0.16, 0.12]]) * np.array([[0.92], [1.0], [0.95], [0.75]])  # (4, 3)
_FAN = np.array([0.06, 0.0, -0.06, -0.14])  # finger directions at rest (radians towards +x)
_SPREAD = np.array([0.2, 0.04, -0.12, -0.3])  # extra angle per unit of spread
_THUMB_CMC = np.array([0.11, 0.10, 0.0])
_THUMB_SEGMENTS = (0.17, 0.13, 0.11)
_PALM_CENTRE = np.array([-0.8, 0.3, 0.6]) / np.linalg.norm([-0.8, 0.3, 0.6])

# A handshape: (mcp, pip) flexion in [0, 1] for index, middle, ring, pinky; spread; thumb
# abduction, opposition and flexion in [0, 1]. Names follow the ASL handshapes they resemble.
_CURLED, _STRAIGHT = (0.95, 1.0), (0.0, 0.0)
HANDSHAPES: dict[str, tuple[float, ...]] = {
    "B": (*_STRAIGHT * 4, 0.0, 0.05, 0.7, 0.6),
    "5": (*_STRAIGHT * 4, 1.0, 0.9, 0.0, 0.0),
    "A": (*_CURLED * 4, 0.0, 0.15, 0.0, 0.0),
    "S": (*_CURLED * 4, 0.0, 0.2, 0.9, 0.7),
    "1": (*_STRAIGHT, *_CURLED * 3, 0.0, 0.2, 0.9, 0.7),
    "V": (*_STRAIGHT * 2, *_CURLED * 2, 0.9, 0.2, 0.9, 0.7),
    "W": (*_STRAIGHT * 3, *_CURLED, 0.8, 0.3, 1.0, 0.8),
    "Y": (*_CURLED * 3, *_STRAIGHT, 0.6, 1.0, 0.0, 0.0),
    "L": (*_STRAIGHT, *_CURLED * 3, 0.0, 1.0, 0.0, 0.0),
    "C": (0.35, 0.45) * 4 + (0.1, 0.6, 0.6, 0.2),
    "O": (0.55, 0.75) * 4 + (0.0, 0.5, 1.0, 0.55),
    "claw": (0.15, 0.95) * 4 + (1.0, 0.8, 0.3, 0.6),
    "bentB": (0.9, 0.0) * 4 + (0.0, 0.2, 0.5, 0.2),
    "X": (0.3, 0.9, *_CURLED * 3, 0.0, 0.2, 0.9, 0.7),
}
RELAXED = np.array((0.25, 0.35) * 4 + (0.2, 0.4, 0.3, 0.2))  # hands at rest

# Wrist locations of the dominant hand in right-arm space (SW, x towards image right, y down).
LOCATIONS: dict[str, tuple[float, float]] = {
    "forehead": (-0.1, -0.45), "cheek": (-0.2, -0.2), "chin": (0.05, -0.08),
    "chest": (0.05, 0.35), "neutral": (-0.3, 0.45), "high": (-0.3, 0.2),
    "side": (-0.7, 0.55), "stomach": (-0.05, 0.75), "shoulder": (0.35, 0.1),
}
PATH_KINDS = ("line", "arc", "circle", "wiggle", "tap", "hold", "curve")
# Hand orientations (wrist bend, palm yaw, pitch) in radians; yaw 0 = palm to the camera.
_YAWS = (0.0, 0.8, 1.57, 2.6)
_REST_ORIENT = np.array([0.1, 1.57, 0.0])


# ----------------------------------------------------------------------------- small helpers
def _ease(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, amp: float, lo: float = 0.1,
                  hi: float = 0.8, n: int = 3) -> np.ndarray:
    """A smooth random signal over times t (T,) in seconds, std about ``amp``."""
    f = rng.uniform(lo, hi, n)
    ph = rng.uniform(0, 2 * np.pi, n)
    return amp * np.sqrt(2.0 / n) * np.sin(2 * np.pi * f[None] * t[:, None] + ph[None]).sum(axis=1)


@dataclass
class _ArmPlan:
    """What one arm should do, per frame, in right-arm space (x towards image right for the right
    arm; the left arm is planned as its mirror image and mirrored back at the end).

    target (T, 2) wrist target in SW relative to the mid-shoulder point; shape (T, 12) handshape
    parameters; orient (T, 3) wrist bend, palm yaw and pitch.
    """

    target: np.ndarray
    shape: np.ndarray
    orient: np.ndarray

    def __len__(self) -> int:
        return len(self.target)

    def first(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.target[0], self.shape[0], self.orient[0]

    def last(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.target[-1], self.shape[-1], self.orient[-1]

    @staticmethod
    def hold(target, shape, orient, n: int) -> "_ArmPlan":
        return _ArmPlan(np.tile(np.asarray(target, float), (n, 1)), np.tile(np.asarray(shape, float), (n, 1)),
                        np.tile(np.asarray(orient, float), (n, 1)))

    @staticmethod
    def between(a: "_ArmPlan", b: "_ArmPlan", n: int) -> "_ArmPlan":
        """n frames easing from the last state of a to the first state of b."""
        u = _ease((np.arange(n) + 1.0) / (n + 1.0))[:, None]
        (ta, sa, oa), (tb, sb, ob) = a.last(), b.first()
        return _ArmPlan(ta + u * (tb - ta), sa + u * (sb - sa), oa + u * (ob - oa))

    @staticmethod
    def join(parts: list["_ArmPlan"]) -> "_ArmPlan":
        return _ArmPlan(np.concatenate([p.target for p in parts]), np.concatenate([p.shape for p in parts]),
                        np.concatenate([p.orient for p in parts]))


# ----------------------------------------------------------------------------- kinematics
def _solve_arm(target: np.ndarray, upper: float, fore: float) -> tuple[np.ndarray, np.ndarray]:
    """2-link inverse kinematics from SHOULDER towards target (T, 2) -> elbow, wrist (T, 2).

    The bone lengths are exact in every frame; an unreachable target is approached along the
    same direction. The elbow always bends to the same side (down and outwards for typical
    signing positions), so it never jumps between the two solutions.
    """
    v = target - SHOULDER
    d = np.linalg.norm(v, axis=1)
    d_safe = np.maximum(d, 1e-9)
    u = v / d_safe[:, None]
    u[d < 1e-9] = (0.0, 1.0)
    d = np.clip(d, abs(upper - fore) + 1e-3, (upper + fore) * (1 - 1e-4))
    cos_a = np.clip((upper ** 2 + d ** 2 - fore ** 2) / (2 * upper * d), -1.0, 1.0)
    a = np.arccos(cos_a)
    ang = np.arctan2(u[:, 1], u[:, 0]) + a
    elbow = SHOULDER + upper * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    wrist = SHOULDER + u * d[:, None]
    return elbow, wrist


def _rot_about(axis: int, ang: np.ndarray) -> np.ndarray:
    """Rotation matrices (T, 3, 3) about coordinate axis 0 (x), 1 (y) or 2 (z)."""
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    c, s = np.cos(ang), np.sin(ang)
    out = np.zeros((len(ang), 3, 3))
    out[:, axis, axis] = 1.0
    out[:, i, i] = c
    out[:, j, j] = c
    out[:, i, j] = -s
    out[:, j, i] = s
    return out


def _bend(d: np.ndarray, toward: np.ndarray, ang: np.ndarray) -> np.ndarray:
    """Turn unit directions d (..., 3) towards the unit vectors ``toward`` by ang (...)."""
    perp = toward - (toward * d).sum(-1, keepdims=True) * d
    perp = perp / np.maximum(np.linalg.norm(perp, axis=-1, keepdims=True), 1e-9)
    return np.cos(ang)[..., None] * d + np.sin(ang)[..., None] * perp


def hand_points(shape: np.ndarray) -> np.ndarray:
    """Handshape parameters (T, 12) -> 21 MediaPipe hand landmarks (T, 21, 3) in the local hand
    frame (unit = hand length; right hand; see the module's hand model)."""
    T = len(shape)
    mcp, pip = shape[:, 0:8:2], shape[:, 1:8:2]  # (T, 4)
    spread = shape[:, 8:9]
    abduct, oppose, flex = shape[:, 9], shape[:, 10], shape[:, 11]
    out = np.zeros((T, 21, 3))
    beta = _FAN[None] + spread * _SPREAD[None]  # (T, 4)
    d0 = np.stack([np.sin(beta), np.cos(beta), np.zeros_like(beta)], axis=-1)  # (T, 4, 3)
    ez = np.array([0.0, 0.0, 1.0])
    cum = [1.5 * mcp, 1.5 * mcp + 1.75 * pip, 1.5 * mcp + 2.95 * pip]
    pos = np.broadcast_to(_MCP, (T, 4, 3)).copy()
    out[:, 5::4] = pos
    for j in range(3):
        seg = np.cos(cum[j])[..., None] * d0 + np.sin(cum[j])[..., None] * ez
        pos = pos + _SEGMENTS[None, :, j, None] * seg
        out[:, 6 + j::4][:, :4] = pos
    # Thumb: CMC, MCP, IP, tip.
    bt = 0.3 + 0.75 * abduct
    dt = np.stack([np.sin(bt), np.cos(bt), np.zeros_like(bt)], axis=-1)  # (T, 3)
    dt = _bend(dt, np.broadcast_to(ez, dt.shape), 0.9 * oppose)
    palm = np.broadcast_to(_PALM_CENTRE, dt.shape)
    p = np.broadcast_to(_THUMB_CMC, (T, 3)).copy()
    out[:, 1] = p
    for j, ang in enumerate((np.zeros(T), 0.6 * flex, 1.4 * flex)):
        p = p + _THUMB_SEGMENTS[j] * _bend(dt, palm, ang)
        out[:, 2 + j] = p
    return out


def _hand_rotation(forearm_angle: np.ndarray, orient: np.ndarray) -> np.ndarray:
    """Local hand frame -> image frame (x right, y down, z away from the camera), (T, 3, 3).

    With no bend the fingers continue the forearm; yaw turns the hand about its long axis
    (0: palm to the camera), pitch tilts the fingers towards or away from the camera.
    """
    base = np.diag([1.0, -1.0, -1.0])  # fingers up, palm to the camera
    in_plane = forearm_angle + np.pi / 2 + orient[:, 0]
    return _rot_about(2, in_plane) @ base @ _rot_about(1, orient[:, 1]) @ _rot_about(0, orient[:, 2])


def _arm(plan: _ArmPlan, signer) -> np.ndarray:  # signer: msmae.poses.synthetic.Signer
    """An arm plan -> (T, 24, 2) shoulder, elbow, wrist and 21 hand points, right-arm space (SW)."""
    elbow, wrist = _solve_arm(plan.target, signer.upper_arm, signer.forearm)
    fa = wrist - elbow
    rot = _hand_rotation(np.arctan2(fa[:, 1], fa[:, 0]), plan.orient)
    local = hand_points(plan.shape)  # (T, 21, 3)
    hand = np.einsum("tij,tkj->tki", rot, local)[..., :2] * signer.hand_size + wrist[:, None]
    T = len(plan)
    return np.concatenate([np.broadcast_to(SHOULDER, (T, 1, 2)), elbow[:, None], wrist[:, None], hand], axis=1)


# ----------------------------------------------------------------------------- face
def _face_template() -> tuple[np.ndarray, np.ndarray]:
    """(112, 2) face points in FACE_MESH_INDICES order (unit = face width, origin = nose tip,
    y down; the signer's right = image left) and (112,) depths towards the camera."""
    pts, depth = [], []
    for i in range(20):  # lower contour: 234 (image left, ear) -> 152 (chin, i=10) -> 323
        th = np.deg2rad(180 - 9 * i)
        pts.append((0.5 * np.cos(th), -0.1 + 0.68 * np.sin(th)))
        depth.append(0.08 * np.sin(th) - 0.2 * abs(np.cos(th)))
    for half_w, up, low, cy in ((0.2, 0.07, 0.08, 0.3), (0.16, 0.01, 0.01, 0.3)):  # outer, inner lips
        for k in range(20):  # top centre, towards image right, corner (k=5), bottom (k=10), ...
            a = 2 * np.pi * k / 20
            h = up if np.cos(a) >= 0 else low
            pts.append((half_w * np.sin(a), cy - h * np.cos(a)))
            depth.append(0.12)
    pts += [(-0.1, 0.08), (-0.04, 0.1), (0.0, 0.11), (0.04, 0.1), (0.1, 0.08),  # nostrils 98..327
            (0.0, 0.0), (0.0, -0.05), (0.0, -0.1), (0.0, -0.17), (0.0, -0.23)]  # tip 1 .. bridge 197
    depth += [0.15, 0.17, 0.18, 0.17, 0.15, 0.25, 0.23, 0.2, 0.16, 0.13]
    for k in range(5):  # brows: right 46 (outer) -> 55 (inner); left 285 (inner) -> 276 (outer)
        x = -0.38 + 0.07 * k
        pts.append((x, -0.36 - 0.04 * np.sin(np.pi * k / 4)))
        depth.append(0.08)
    for k in range(5):
        x = 0.1 + 0.07 * k
        pts.append((x, -0.36 - 0.04 * np.sin(np.pi * (4 - k) / 4)))
        depth.append(0.08)
    for cx in (-0.2, 0.2):  # eyes: right 33 (outer corner) ..., left 362 (inner corner) ...
        for k in range(16):
            b = np.pi * k / 8
            h = 0.045 if np.sin(b) >= 0 else 0.035
            pts.append((cx - 0.1 * np.cos(b), -0.2 - h * np.sin(b)))
            depth.append(0.03)
    return np.asarray(pts), np.asarray(depth)


_FACE, _FACE_DEPTH = _face_template()
_LOWER_LIP = np.r_[20 + np.arange(6, 15)]  # outer lower lip points (k = 6..14)
_INNER_LOWER = 40 + np.arange(6, 15)
_UPPER_LIDS = np.r_[80 + np.arange(1, 8), 96 + np.arange(1, 8)]


def _face(rng: np.random.Generator, t: np.ndarray, fps: float, talking: np.ndarray) -> np.ndarray:
    """(T, 112, 2) face points in face-width units around the nose tip, moving a little:
    mouth opening (more while signing), blinks, head yaw, pitch and roll."""
    T = len(t)
    pts = np.broadcast_to(_FACE, (T, 112, 2)).copy()
    opening = np.clip(0.015 + 0.03 * talking + _smooth_noise(rng, t, 0.02, 0.5, 3.0), 0.0, 0.14)
    pts[:, _LOWER_LIP, 1] += opening[:, None]
    pts[:, _INNER_LOWER, 1] += opening[:, None]
    blink = np.zeros(T)
    step = max(1, int(round(0.13 * fps)))
    for start in np.cumsum(rng.uniform(1.5, 5.0, 8) * fps).astype(int):
        if start < T:
            blink[start:start + step] = 1.0
    lid = _FACE[_UPPER_LIDS, 1]
    eye_line = -0.2
    pts[:, _UPPER_LIDS, 1] = lid + blink[:, None] * 0.85 * (eye_line - lid)
    yaw = _smooth_noise(rng, t, 0.08, 0.1, 0.5)
    pitch = _smooth_noise(rng, t, 0.05, 0.1, 0.5)
    roll = _smooth_noise(rng, t, 0.04, 0.1, 0.5)
    x = pts[..., 0] * np.cos(yaw)[:, None] + _FACE_DEPTH * np.sin(yaw)[:, None]
    y = pts[..., 1] * np.cos(pitch)[:, None] - _FACE_DEPTH * np.sin(pitch)[:, None]
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    return np.stack([c * x - s * y, s * x + c * y], axis=-1)


# ----------------------------------------------------------------------------- dropouts
def _dropout_runs(rng: np.random.Generator, hazard: np.ndarray, forced: np.ndarray,
                  recover: np.ndarray) -> np.ndarray:
    """A (T,) bool 'missing' track: runs start with probability hazard, end with probability
    recover, and cover every frame where forced is True."""
    T = len(hazard)
    u = rng.random(T)
    missing = np.zeros(T, dtype=bool)
    state = u[0] < hazard[0] / max(hazard[0] + recover[0], 1e-9)
    for i in range(T):
        if i > 0:
            state = (u[i] >= recover[i]) if state else (u[i] < hazard[i])
        state = state or bool(forced[i])
        missing[i] = state
    return missing
