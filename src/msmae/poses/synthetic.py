"""A SYNTHETIC signer: procedurally generated pose sequences for tests and the demo.

Nothing here comes from a real person. Every sequence it makes is marked synthetic:
``seq.meta["synthetic"] = True`` and ``seq.source = "synthetic:..."``; class names start with
``synthetic-``.

The sequences are in the canonical layout (body 6, left hand 21, right hand 21, face 112) and in
the units of a real MediaPipe-derived sequence *before* normalisation: image-height units with x
scaled by width/height, shoulders 0.24-0.34 apart, the mid-shoulder point near x = aspect / 2,
y = 0.5-0.62. They are built as follows (lengths below in shoulder widths, SW):

- a torso with two shoulders that sways a little (one rigid motion for the whole upper body);
- two arms with fixed 2D bone lengths (upper arm 0.85, forearm 0.68 SW, varied per signer); the
  elbow comes from a 2-link inverse kinematics towards a wrist target, always bending the same way;
- 21-point hands from a small 3D hand model (palm, finger joints that flex, spread, a thumb that
  abducts and opposes) turned by the wrist orientation and projected orthographically; each class
  has a start and an end handshape from a library of named shapes, blended over the sign;
- wrist paths per class: a location (chin, chest, neutral space, ...) plus a smooth movement
  (line, arc, circle, wiggle, tap, hold, or a random Fourier curve); classes share locations,
  movements and handshapes, so only their combination tells them apart; one-handed, symmetric,
  alternating and base-hand two-handed classes;
- variation per sample: signer body size, proportions, position and frame size, optionally
  left-handed (the mirror image, the dominant hand becomes MediaPipe's ``left_hand``), speed and
  timing, location, amplitude and handshape noise, keypoint jitter;
- detection dropouts: whole-hand runs of undetected frames, much likelier when the hand is low or
  leaves the frame (hands at rest are mostly undetected, as with MediaPipe), and rare face dropouts;
- a face of 112 points in the order of :data:`msmae.layout.FACE_MESH_INDICES` (lower contour,
  lips, nose, brows and eyes) that sways, opens the mouth and blinks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from msmae.layout import CANONICAL
from msmae.poses.sequence import PoseSequence
from msmae.poses.synthetic_body import (FACE_WIDTH, FOREARM, FRAME_SIZES, HAND_LENGTH,  # noqa: F401 (re-exported)
                                        HANDSHAPES, LOCATIONS, NOSE_HEIGHT, PATH_KINDS, RELAXED, UPPER_ARM,
                                        _REST_ORIENT, _YAWS, _arm, _ArmPlan, _dropout_runs, _ease, _face,
                                        _smooth_noise, hand_points)

# ----------------------------------------------------------------------------- class descriptions
@dataclass(frozen=True)
class Path:
    """A smooth wrist movement p(s), s in [0, 1], p(0) = 0 (SW units):
    p(s) = linear * s + sum_j cos_j * cos(2 pi f_j s) + sin_j * sin(2 pi f_j s) - p(0)."""

    kind: str
    linear: tuple[float, float]
    freqs: tuple[float, ...]
    cos: tuple[tuple[float, float], ...]
    sin: tuple[tuple[float, float], ...]

    def __call__(self, s: np.ndarray) -> np.ndarray:
        """s (T,) -> displacement (T, 2)."""
        s = np.asarray(s, dtype=np.float64)[:, None]
        out = s * np.asarray(self.linear)
        for f, a, b in zip(self.freqs, self.cos, self.sin):
            out = out + np.cos(2 * np.pi * f * s) * np.asarray(a) + np.sin(2 * np.pi * f * s) * np.asarray(b)
        start = np.asarray(sum((np.asarray(a) for a in self.cos), np.zeros(2)))
        return out - start

    @property
    def cycles(self) -> float:
        return max(self.freqs, default=0.5)


@dataclass(frozen=True)
class SignClass:
    """One synthetic sign: where, how it moves, which handshapes, how many hands."""

    name: str
    hands: str  # "one", "symmetric", "alternating" or "base"
    location: str  # a key of LOCATIONS
    anchor: tuple[float, float]  # dominant wrist at the start, right-arm space (SW)
    path: Path
    shape_start: str  # a key of HANDSHAPES
    shape_end: str
    orient_start: tuple[float, float, float]  # wrist bend, palm yaw, pitch (radians)
    orient_end: tuple[float, float, float]
    duration_s: float  # core duration at normal speed
    base_anchor: tuple[float, float] = (0.0, 0.0)  # passive hand (hands == "base"), its own space
    base_shape: str = "B"
    base_orient: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Signer:
    """A synthetic signer's body, frame and habits."""

    width: int  # frame size in pixels
    height: int
    centre: tuple[float, float]  # mid-shoulder point, image-height units
    shoulder_width: float  # image-height units
    upper_arm: float  # SW
    forearm: float  # SW
    hand_size: float  # hand length, SW
    face_width: float  # SW
    face_offset: tuple[float, float]  # nose tip relative to the mid-shoulder point, SW
    left_handed: bool  # the mirror image: the dominant hand is MediaPipe's left hand
    rest: tuple[float, float]  # wrist at rest, right-arm space (SW)
    speed: float  # habitual speed factor (>1 = faster)
    jitter: float  # keypoint noise factor
    detect: tuple[float, float]  # hand-dropout hazard factor of the (dominant, other) hand

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "shoulder_width": round(self.shoulder_width, 4),
                "centre": [round(c, 4) for c in self.centre], "left_handed": self.left_handed}


# ----------------------------------------------------------------------------- the signer
@dataclass(kw_only=True)
class SyntheticSigner:
    """Generator of SYNTHETIC signs and sentences (see the module docstring). Deterministic:
    the classes depend only on ``seed`` and every sample only on the generator it is given."""

    num_classes: int = 20  # number of sign classes
    seed: int = 0  # seed of the class definitions
    fps: float = 30.0  # frame rate of the generated sequences
    noise: float = 1.0  # keypoint jitter factor (0 = none)
    dropout: float = 1.0  # detection-dropout factor (0 = every keypoint always present)
    variation: float = 1.0  # factor on per-sample variation (signer, speed, location, handshape)
    left_handed: float = 0.1  # fraction of left-handed (mirrored) signers
    path_share: float = 0.5  # distinct movement paths per class (lower = more sharing)
    classes: list[SignClass] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        for name in ("noise", "dropout", "variation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        self.classes = self._make_classes(np.random.default_rng(self.seed))

    # ------------------------------------------------------------------ classes
    @staticmethod
    def _make_path(rng: np.random.Generator, kind: str) -> Path:
        th = rng.uniform(0, 2 * np.pi)
        e = np.array([np.cos(th), np.sin(th)])
        perp = np.array([-e[1], e[0]])
        z = (0.0, 0.0)
        if kind == "line":
            return Path(kind, tuple(rng.uniform(0.3, 0.6) * e), (), (), ())
        if kind == "arc":
            h = rng.choice([-1, 1]) * rng.uniform(0.15, 0.25)
            return Path(kind, tuple(rng.uniform(0.35, 0.6) * e), (0.5,), (z,), (tuple(h * perp),))
        if kind == "circle":
            n, r = int(rng.integers(1, 3)), rng.uniform(0.12, 0.22)
            turn = rng.choice([-1, 1])
            return Path(kind, z, (float(n),), ((r, 0.0),), ((0.0, turn * r),))
        if kind == "wiggle":
            n = float(rng.integers(2, 4))
            return Path(kind, tuple(rng.uniform(0.0, 0.15) * perp), (n,), (z,), (tuple(rng.uniform(0.08, 0.15) * e),))
        if kind == "tap":
            n = float(rng.integers(2, 4))
            return Path(kind, z, (n,), ((0.0, -rng.uniform(0.05, 0.09)),), (z,))
        if kind == "hold":
            return Path(kind, tuple(rng.uniform(0.0, 0.06) * e), (), (), ())
        freqs = (0.5, 1.0, 1.5)
        return Path(kind, tuple(rng.normal(0, 0.2, 2)), freqs, tuple(tuple(rng.normal(0, 0.1, 2)) for _ in freqs),
                    tuple(tuple(rng.normal(0, 0.1, 2)) for _ in freqs))

    @staticmethod
    def _orient(rng: np.random.Generator) -> tuple[float, float, float]:
        return (float(rng.uniform(-0.5, 0.5)), float(rng.choice(_YAWS) + rng.normal(0, 0.15)),
                float(rng.uniform(-0.4, 0.4)))

    def _make_classes(self, rng: np.random.Generator) -> list[SignClass]:
        num_paths = max(3, int(math.ceil(self.num_classes * self.path_share)))
        kinds = [PATH_KINDS[i % len(PATH_KINDS)] for i in rng.permutation(max(num_paths, len(PATH_KINDS)))]
        paths = [self._make_path(rng, k) for k in kinds[:num_paths]]
        shapes = list(HANDSHAPES)
        locations = list(LOCATIONS)
        out: list[SignClass] = []
        seen: set[tuple] = set()
        while len(out) < self.num_classes:
            i = len(out)
            hands = str(rng.choice(["one", "symmetric", "alternating", "base"], p=[0.55, 0.2, 0.1, 0.15]))
            loc = str(rng.choice(locations))
            p = int(rng.integers(len(paths)))
            s0 = str(rng.choice(shapes))
            s1 = s0 if rng.random() < 0.6 else str(rng.choice(shapes))
            key = (hands, loc, p, s0, s1)
            if key in seen:  # every class is a distinct combination
                continue
            seen.add(key)
            anchor = np.asarray(LOCATIONS[loc]) + rng.normal(0, 0.05, 2)
            base_anchor, base_shape, base_orient = (0.0, 0.0), "B", (0.0, 0.0, 0.0)
            if hands == "base":
                base_anchor = (float(rng.uniform(-0.1, 0.15)), float(rng.uniform(0.35, 0.6)))
                base_shape = str(rng.choice(["B", "5", "S", "1", "C"]))
                base_orient = (float(rng.uniform(-0.3, 0.3)), float(rng.choice([0.0, 1.57])), 1.0)
                anchor = np.array([-base_anchor[0], base_anchor[1] - 0.25]) + rng.normal(0, 0.05, 2)
                loc = "base"
            o0 = self._orient(rng)
            o1 = o0 if rng.random() < 0.7 else self._orient(rng)
            path = paths[p]
            tag = s0 if s1 == s0 else f"{s0}>{s1}"
            name = f"synthetic-{i:02d}-{loc}-{path.kind}-{tag}-{hands}"
            out.append(SignClass(
                name=name, hands=hands, location=loc, anchor=(float(anchor[0]), float(anchor[1])), path=path,
                shape_start=s0, shape_end=s1, orient_start=o0, orient_end=o1,
                duration_s=float(0.45 + 0.22 * path.cycles + rng.uniform(0.0, 0.25)),
                base_anchor=base_anchor, base_shape=base_shape, base_orient=base_orient))
        return out

    def class_names(self) -> list[str]:
        """Names of the synthetic classes (``synthetic-NN-location-path-handshape-hands``)."""
        return [c.name for c in self.classes]

    # ------------------------------------------------------------------ signers
    def random_signer(self, rng: np.random.Generator) -> Signer:
        """A new synthetic signer (body, frame, position, habits)."""
        v = self.variation
        width, height = FRAME_SIZES[int(rng.integers(len(FRAME_SIZES)))]
        aspect = width / height
        sw = float(np.clip(0.29 + v * rng.normal(0, 0.025), 0.24, 0.34))
        centre = (float(aspect / 2 + v * rng.normal(0, 0.04)),
                  float(np.clip(0.56 + v * rng.normal(0, 0.03), 0.5, 0.62)))
        rest = (-0.55, 1.45) if rng.random() < 0.5 else (-0.25, 1.15)
        return Signer(
            width=width, height=height, centre=centre, shoulder_width=sw,
            upper_arm=float(UPPER_ARM * np.exp(v * rng.normal(0, 0.05))),
            forearm=float(FOREARM * np.exp(v * rng.normal(0, 0.05))),
            hand_size=float(HAND_LENGTH * np.exp(v * rng.normal(0, 0.06))),
            face_width=float(FACE_WIDTH * np.exp(v * rng.normal(0, 0.06))),
            face_offset=(float(v * rng.normal(0, 0.03)), float(-NOSE_HEIGHT + v * rng.normal(0, 0.03))),
            left_handed=bool(rng.random() < self.left_handed),
            rest=(rest[0] + float(rng.normal(0, 0.05)), rest[1] + float(rng.normal(0, 0.05))),
            speed=float(np.exp(v * rng.normal(0, 0.12))), jitter=float(np.exp(rng.normal(0, 0.3))),
            detect=(float(np.exp(rng.normal(0, 0.4))), float(np.exp(rng.normal(0, 0.4)))))

    # ------------------------------------------------------------------ plans
    def _rest(self, signer: Signer, n: int) -> _ArmPlan:
        return _ArmPlan.hold(signer.rest, RELAXED, _REST_ORIENT, n)

    def _core(self, cls: SignClass, signer: Signer, rng: np.random.Generator) -> tuple[_ArmPlan, _ArmPlan | None]:
        """The sign itself for the dominant and the other hand (None: the other hand rests)."""
        v = self.variation
        speed = signer.speed * float(np.exp(v * rng.normal(0, 0.18)))
        n = max(4, int(round(cls.duration_s / speed * self.fps)))
        t = np.linspace(0.0, 1.0, n)
        w = float(np.clip(v * rng.normal(0, 0.2), -0.6, 0.6))
        s = t + w * np.sin(2 * np.pi * t) / (2 * np.pi)  # monotone time warp
        amp = float(np.exp(v * rng.normal(0, 0.15)))
        a = v * rng.normal(0, 0.15)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        move = amp * cls.path(s) @ rot.T  # (n, 2)
        anchor = np.asarray(cls.anchor) + v * rng.normal(0, 0.07, 2)
        blend = _ease((s - 0.25) / 0.5)[:, None]
        noise = v * rng.normal(0, 0.07, 12)
        shape = (1 - blend) * np.asarray(HANDSHAPES[cls.shape_start]) + blend * np.asarray(HANDSHAPES[cls.shape_end])
        shape = np.clip(shape + noise, -0.2, 1.2)
        o0, o1 = np.asarray(cls.orient_start), np.asarray(cls.orient_end)
        orient = (1 - blend) * o0 + blend * o1 + v * rng.normal(0, 0.15, 3)
        dom = _ArmPlan(anchor + move, shape, orient)
        if cls.hands == "one":
            return dom, None
        if cls.hands in ("symmetric", "alternating"):
            sign = 1.0 if cls.hands == "symmetric" else -1.0
            other = _ArmPlan(anchor + sign * move + v * rng.normal(0, 0.04, 2),
                             np.clip(shape + v * rng.normal(0, 0.04, 12), -0.2, 1.2),
                             orient + v * rng.normal(0, 0.08, 3))
            return dom, other
        base = np.asarray(cls.base_anchor) + v * rng.normal(0, 0.04, 2)
        other = _ArmPlan.hold(base, np.asarray(HANDSHAPES[cls.base_shape]) + v * rng.normal(0, 0.05, 12),
                              np.asarray(cls.base_orient) + v * rng.normal(0, 0.1, 3), n)
        other.target = other.target + 0.02 * np.sin(np.linspace(0, np.pi, n))[:, None]
        return dom, other

    def _frames(self, seconds: float, signer: Signer) -> int:
        return max(1, int(round(seconds / signer.speed * self.fps)))

    def _plan(self, labels: list[int], signer: Signer, rng: np.random.Generator
              ) -> tuple[_ArmPlan, _ArmPlan, list[tuple[int, int]], np.ndarray]:
        """Rest -> sign 1 -> transition -> sign 2 ... -> rest. Returns the dominant and other
        hand's plans, the [start, end) frames of each sign and a (T,) 'signing' weight."""
        dom_parts: list[_ArmPlan] = []
        oth_parts: list[_ArmPlan] = []
        spans = []
        n0 = int(rng.integers(0, int(0.3 * self.fps) + 1))
        if n0:
            dom_parts.append(self._rest(signer, n0))
            oth_parts.append(self._rest(signer, n0))
        prev_d = self._rest(signer, 1)
        prev_o = self._rest(signer, 1)
        t = n0
        for i, label in enumerate(labels):
            dom, oth = self._core(self.classes[label], signer, rng)
            if oth is None:  # the other hand keeps (or goes back to) rest
                oth = self._rest(signer, len(dom))
            hold = int(rng.integers(0, int(0.1 * self.fps) + 1))
            if hold:
                dom = _ArmPlan.join([dom, _ArmPlan.hold(*dom.last(), hold)])
                oth = _ArmPlan.join([oth, _ArmPlan.hold(*oth.last(), hold)])
            span = rng.uniform(0.2, 0.4) if i == 0 else rng.uniform(0.12, 0.3)
            n_tr = self._frames(span, signer)
            dom_parts += [_ArmPlan.between(prev_d, dom, n_tr), dom]
            oth_parts += [_ArmPlan.between(prev_o, oth, n_tr), oth]
            t += n_tr
            spans.append((t, t + len(dom)))
            t += len(dom)
            prev_d, prev_o = dom, oth
        rest = self._rest(signer, 1)
        n_off = self._frames(rng.uniform(0.2, 0.4), signer)
        n1 = int(rng.integers(0, int(0.3 * self.fps) + 1))
        dom_parts += [_ArmPlan.between(prev_d, rest, n_off), self._rest(signer, n1)]
        oth_parts += [_ArmPlan.between(prev_o, rest, n_off), self._rest(signer, n1)]
        dom_plan, oth_plan = _ArmPlan.join(dom_parts), _ArmPlan.join(oth_parts)
        signing = np.zeros(len(dom_plan))
        for a, b in spans:
            signing[a:b] = 1.0
        return dom_plan, oth_plan, spans, signing

    # ------------------------------------------------------------------ rendering
    def _render(self, dom: _ArmPlan, oth: _ArmPlan, signing: np.ndarray, signer: Signer,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Plans -> canonical coords (T, 160, 2) in image-height units and present (T, 160)."""
        T = len(dom)
        t = np.arange(T) / self.fps
        right_plan, left_plan = (oth, dom) if signer.left_handed else (dom, oth)
        right = _arm(right_plan, signer)  # (T, 24, 2), SW, right-arm space
        left = _arm(left_plan, signer) * np.array([-1.0, 1.0])  # mirrored back
        # Torso sway: one rigid motion of the upper body about the mid-shoulder point.
        roll = _smooth_noise(rng, t, 0.02)
        shift = np.stack([_smooth_noise(rng, t, 0.03), _smooth_noise(rng, t, 0.015)], axis=1)
        face = _face(rng, t, self.fps, signing) * signer.face_width + np.asarray(signer.face_offset)
        # Body stream order: left/right shoulder, left/right elbow, left/right wrist.
        body = np.stack([left[:, 0], right[:, 0], left[:, 1], right[:, 1], left[:, 2], right[:, 2]], axis=1)
        pts = np.concatenate([body, left[:, 3:], right[:, 3:], face], axis=1)  # (T, 160, 2) SW
        c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
        x, y = pts[..., 0], pts[..., 1]
        pts = np.stack([c * x - s * y, s * x + c * y], axis=-1) + shift[:, None]
        # Keypoint jitter, larger on the hands than on the face.
        scale = np.r_[np.full(6, 0.008), np.full(42, 0.006), np.full(112, 0.003)] * self.noise * signer.jitter
        if self.noise > 0:
            pts = pts + rng.normal(0.0, 1.0, pts.shape) * scale[None, :, None]
        coords = pts * signer.shoulder_width + np.asarray(signer.centre)
        present = np.ones((T, CANONICAL.num_points), dtype=bool)
        if self.dropout > 0:
            self._drop(coords, present, signer, rng)
        return coords.astype(np.float32), present

    def _drop(self, coords: np.ndarray, present: np.ndarray, signer: Signer, rng: np.random.Generator) -> None:
        """Whole-hand and whole-face detection dropouts, in place on present."""
        aspect = signer.width / signer.height
        sl = CANONICAL.slices()
        for name, quality in (("left_hand", signer.detect[1 if not signer.left_handed else 0]),
                              ("right_hand", signer.detect[0 if not signer.left_handed else 1])):
            h = coords[:, sl[name]]  # (T, 21, 2)
            outside = ((h[..., 0] < 0) | (h[..., 0] > aspect) | (h[..., 1] < 0) | (h[..., 1] > 1)).mean(axis=1)
            wrist_y = h[:, 0, 1]
            low = np.clip((wrist_y - 0.82) / 0.15, 0.0, 1.0)
            speed = np.r_[0.0, np.linalg.norm(np.diff(h[:, 0], axis=0), axis=1)] * self.fps / signer.shoulder_width
            hazard = self.dropout * (0.012 * quality + 0.35 * low + 0.03 * np.clip(speed - 3.0, 0, 3))
            recover = 0.3 * (1.0 - 0.8 * low)
            missing = _dropout_runs(rng, np.clip(hazard, 0, 1), outside > 0.25, recover)
            present[missing, sl[name]] = False
        face_missing = _dropout_runs(rng, np.full(len(coords), 0.003 * self.dropout),
                                     np.zeros(len(coords), dtype=bool), np.full(len(coords), 0.3))
        present[face_missing, sl["face"]] = False

    def _sequence(self, coords, present, signer: Signer, source: str, meta: dict) -> PoseSequence:
        meta = {"synthetic": True, "generator": "msmae.poses.synthetic.SyntheticSigner",
                "signer": signer.to_dict(), **meta}
        return PoseSequence(coords=coords, present=present, fps=self.fps, layout=CANONICAL, width=signer.width,
                            height=signer.height, source=source, meta=meta)

    # ------------------------------------------------------------------ public API
    def sign(self, label: int, rng: np.random.Generator, *, signer: Signer | None = None) -> PoseSequence:
        """One SYNTHETIC isolated sign of class ``label`` by a random (or the given) signer:
        rest -> sign -> rest, coords (T, 160, 2) in image-height units, canonical layout."""
        if not 0 <= int(label) < self.num_classes:
            raise ValueError(f"label must be in [0, {self.num_classes}), got {label}")
        signer = signer or self.random_signer(rng)
        dom, oth, spans, signing = self._plan([int(label)], signer, rng)
        coords, present = self._render(dom, oth, signing, signer, rng)
        cls = self.classes[int(label)]
        return self._sequence(coords, present, signer, f"synthetic:sign/{cls.name}",
                              {"label": int(label), "class_name": cls.name,
                               "sign_frames": [int(spans[0][0]), int(spans[0][1])]})

    def dataset(self, num_per_class: int, *, rng: np.random.Generator | None = None, seed: int | None = None,
                num_signers: int | None = None) -> tuple[list[PoseSequence], np.ndarray]:
        """``num_per_class`` SYNTHETIC signs of every class, in class order, and their labels (N,).

        Every sample has its own random signer unless ``num_signers`` is given, in which case
        samples go round-robin to that many signers (``meta["signer_id"]``), e.g. for
        signer-independent splits. Give ``rng`` or ``seed`` (default: derived from ``self.seed``).
        """
        if rng is None:
            rng = np.random.default_rng(seed if seed is not None else (self.seed, 1))
        signers = [self.random_signer(rng) for _ in range(num_signers)] if num_signers else None
        seqs, labels = [], []
        for label in range(self.num_classes):
            for j in range(num_per_class):
                sid = j % len(signers) if signers else None
                seq = self.sign(label, rng, signer=signers[sid] if signers else None)
                if sid is not None:
                    seq.meta["signer_id"] = sid
                seqs.append(seq)
                labels.append(label)
        return seqs, np.asarray(labels, dtype=np.int64)

    def sentence(self, num_signs: int, rng: np.random.Generator, *, signer: Signer | None = None,
                 labels: list[int] | None = None) -> tuple[PoseSequence, list[dict]]:
        """A SYNTHETIC 'sentence': ``num_signs`` random signs (or the given labels) by one signer,
        joined by short transitions, with rest at both ends.

        Returns the sequence and one dict per sign: ``label``, ``class_name``, ``start_frame``
        and ``end_frame`` (the sign occupies frames [start_frame, end_frame)).
        """
        if labels is None:
            if num_signs < 1:
                raise ValueError(f"num_signs must be >= 1, got {num_signs}")
            labels = [int(x) for x in rng.integers(0, self.num_classes, num_signs)]
        elif any(not 0 <= int(x) < self.num_classes for x in labels):
            raise ValueError(f"labels must be in [0, {self.num_classes}), got {labels}")
        signer = signer or self.random_signer(rng)
        dom, oth, spans, signing = self._plan([int(x) for x in labels], signer, rng)
        coords, present = self._render(dom, oth, signing, signer, rng)
        signs = [{"label": int(lab), "class_name": self.classes[int(lab)].name, "start_frame": int(a),
                  "end_frame": int(b)} for lab, (a, b) in zip(labels, spans)]
        seq = self._sequence(coords, present, signer, f"synthetic:sentence/{len(signs)}-signs", {"signs": signs})
        return seq, signs
