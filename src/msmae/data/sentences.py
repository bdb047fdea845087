"""Sentences for sign language translation: pose files read into prepared clips (frame stride, length
cap, normalisation), mBART target tokens, and the dataset + collate function the SLT training loop reads."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from msmae.data.common import epoch_and_index

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    """The usable sentences of one split (clips prepared, targets as given)."""

    ids: list[str]
    texts: list[str]
    clips: list                          # msmae.data.islr.Clip: normalised float16 keypoints


def prepare_sequence(seq, *, layout, normalize: str, frame_stride: int, max_frames: int,
                     model_fps: float | None = None):
    """A canonical PoseSequence -> a :class:`msmae.data.islr.Clip` of ``layout``: every
    ``frame_stride``-th frame (source frames at ``model_fps``, see :func:`msmae.poses.timing.model_step`), at
    most ``max_frames`` frames (uniformly resampled), normalised."""
    from msmae.data.clips import prepare_clip
    from msmae.poses.timing import stride_for_sequence

    # a --frame-stride extraction is already strided
    frame_stride = stride_for_sequence(seq.meta, frame_stride, fps=seq.fps, model_fps=model_fps)
    if frame_stride > 1 and seq.num_frames > 1:
        seq = seq.take_frames(np.arange(0, seq.num_frames, frame_stride))
        seq.fps = seq.fps / frame_stride
    if seq.num_frames > max_frames:
        seq = seq.resample(max_frames)
    return prepare_clip(seq, layout=layout, normalize=normalize)


def load_example(example, *, layout, normalize: str, frame_stride: int, max_frames: int,
                 model_fps: float | None = None):
    """Read one :class:`msmae.data.slt.SLTExample` (cutting its time range, if any) -> Clip."""
    from msmae.poses.readers import read_sequence
    from msmae.poses.sequence import PoseDataError

    seq = read_sequence(example.pose_path)
    if example.start is not None or example.end is not None:
        first = int(round((example.start or 0.0) * seq.fps))
        stop = int(round(example.end * seq.fps)) if example.end is not None else None
        if first >= seq.num_frames:
            raise PoseDataError(f"{example.pose_path}: the range {example.start}..{example.end} s starts after "
                                f"the file's {seq.num_frames} frames")
        seq = seq.slice_frames(first, stop)
    return prepare_sequence(seq, layout=layout, normalize=normalize, frame_stride=frame_stride,
                            max_frames=max_frames, model_fps=model_fps)


def _load_one(job):
    example, layout_spec, kwargs = job
    from msmae.layout import get_layout

    try:
        return load_example(example, layout=get_layout(layout_spec), **kwargs), None
    except Exception as e:  # reported with the example id, never dropped silently
        return None, f"unreadable pose file: {str(e).splitlines()[0] if str(e) else type(e).__name__}"


def load_split(examples, *, layout, normalize: str = "shoulders", frame_stride: int = 1, max_frames: int = 1024,
               model_fps: float | None = None, workers: int = 1, progress: bool = True, desc: str = "poses"):
    """Read the sentences' pose files (in ``workers`` processes) -> (SplitData, [(id, reason)] of the
    examples whose pose file could not be used)."""
    from msmae.data.common import load_in_workers

    kwargs = dict(normalize=normalize, frame_stride=frame_stride, max_frames=max_frames, model_fps=model_fps)
    jobs = [(e, layout.spec, kwargs) for e in examples]
    results = load_in_workers(_load_one, jobs, workers=workers, min_parallel=16, progress=progress, desc=desc)
    keep = [i for i, (c, _) in enumerate(results) if c is not None]
    problems = [(examples[i].id, err) for i, (_, err) in enumerate(results) if err is not None]
    clips = [results[i][0] for i in keep]
    if model_fps:
        _say_rate(clips, float(model_fps) / frame_stride, max_frames, desc)
    return SplitData([examples[i].id for i in keep], [examples[i].text for i in keep], clips), problems


def _say_rate(clips, model_rate: float, max_frames: int, desc: str) -> None:
    """One warning for the clips whose frame rate no whole step brings within 5% of the encoder's ``model_rate``
    model frames per second (see :func:`msmae.poses.timing.model_step`); clips cut to ``max_frames`` are not
    counted, their rate having been changed on purpose."""
    off = sorted({round(c.fps, 3) for c in clips if c.num_frames < max_frames and abs(c.fps / model_rate - 1) > 0.05})
    if off:
        n = sum(1 for c in clips if round(c.fps, 3) in off and c.num_frames < max_frames)
        log.warning("%s: %d of %d clips read at %s model frames per second, not the encoder's %g (their frame "
                    "rate is not a whole multiple of it)", desc, n, len(clips), ", ".join(f"{r:g}" for r in off[:5]),
                    model_rate)


class SentenceDataset(torch.utils.data.Dataset):
    """Map-style dataset -> ``{"coords": float32 (T, K, 2), "labels": int64 (L,), "index": int}``.

    Training: ``drop_duplicate`` of the frames randomly deleted or duplicated, the randomness a
    function of (seed, epoch, index): the epoch comes with the key (``(epoch, index)``, as
    :class:`msmae.train.loop.EpochSampler` passes it, reaching persistent DataLoader workers) or from
    :meth:`set_epoch`; clips longer than ``max_frames``
    after that are resampled to it. Evaluation: the prepared clip as is.
    """

    def __init__(self, clips, targets: Sequence[Sequence[int]], *, train: bool = False,
                 drop_duplicate: float = 0.2, max_frames: int = 1024, seed: int = 0) -> None:
        if len(clips) != len(targets):
            raise ValueError(f"{len(clips)} clips but {len(targets)} targets")
        self.clips, self.targets = list(clips), [np.asarray(t, dtype=np.int64) for t in targets]
        self.train, self.drop_duplicate, self.max_frames, self.seed = train, drop_duplicate, max_frames, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def frames(self, i: int, epoch: int | None = None) -> np.ndarray:
        """Frame indices of item ``i`` in ``epoch`` (default: the dataset's; order kept; deletions/duplicates
        when training)."""
        from msmae.poses.augment import drop_duplicate_counts
        from msmae.poses.sequence import uniform_indices

        n = self.clips[i].num_frames
        idx = np.arange(n)
        if self.train and self.drop_duplicate > 0:
            rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, i])
            idx = np.repeat(idx, drop_duplicate_counts(n, rng, self.drop_duplicate))
        if len(idx) > self.max_frames:
            idx = idx[uniform_indices(len(idx), self.max_frames)]
        return idx

    def __getitem__(self, key) -> dict:
        epoch, i = epoch_and_index(key, self.epoch)
        clip = self.clips[i]
        coords = clip.coords[self.frames(i, epoch)].astype(np.float32)
        return {"coords": coords, "labels": self.targets[i], "index": i}


def collate(items: Sequence[dict]) -> dict:
    """Pad a list of items: coords (B, T, K, 2), frame_valid (B, T) bool, labels (B, L) with -100, index (B,)."""
    b = len(items)
    t = max(it["coords"].shape[0] for it in items)
    k = items[0]["coords"].shape[1]
    lmax = max(len(it["labels"]) for it in items)
    coords = torch.zeros(b, t, k, 2)
    frame_valid = torch.zeros(b, t, dtype=torch.bool)
    labels = torch.full((b, max(lmax, 1)), -100, dtype=torch.long)
    for j, it in enumerate(items):
        n = it["coords"].shape[0]
        coords[j, :n] = torch.from_numpy(it["coords"])
        frame_valid[j, :n] = True
        labels[j, : len(it["labels"])] = torch.from_numpy(it["labels"])
    return {"coords": coords, "frame_valid": frame_valid, "labels": labels,
            "index": torch.tensor([it["index"] for it in items])}


def tokenize_targets(tokenizer, texts: Sequence[str], *, lang: str, max_tokens: int) -> tuple[list[list[int]], int]:
    """mBART-50 targets ``[lang] pieces </s>`` per sentence, cut to ``max_tokens``; -> (ids, number cut)."""
    tokenizer.tgt_lang = lang
    ids = tokenizer(text_target=list(texts), add_special_tokens=True)["input_ids"]
    cut = 0
    out = []
    for x in ids:
        if len(x) > max_tokens:
            cut += 1
            x = x[: max_tokens - 1] + [tokenizer.eos_token_id]
        out.append(list(x))
    return out, cut


def clean_line(text: str) -> str:
    """One sentence as one line of a text file, as sacrebleu's command line reads it back."""
    return text.replace("\r", " ").replace("\n", " ").rstrip()
