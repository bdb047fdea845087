"""Which window each rank draws at each position of pre-training: the data order at scale.

- **Partition.** The training videos are split between the W ranks once per run by a seeded random partition
  (videos with more windows first, those with equal counts in the order of a permutation drawn from ``seed``;
  each in turn goes to the rank with the fewest windows so far; with one window per video that is
  ``permutation[r::W]``). A rank's part never changes during a run, so the device-resident path holds only
  that part.
- **Order.** Each epoch, a rank shuffles its own windows with a generator seeded by ``(seed, epoch, rank)``:
  the ranks' draws are independent of each other (no lock-step, no block of neighbouring videos per batch).
- **Windows per epoch** (``data.sampling``): ``per_video`` draws one window per video per epoch;
  ``by_length`` draws ``ceil(length / window)`` windows per video per epoch (at least one), so a long
  video weighs in proportion to its length. The k-th window of a video starts at a uniform draw inside the
  k-th of its equal strata (``floor((k + u) * room / count)``), so the windows of a long video spread over it.
- **Equal batches.** Every rank runs ``per_rank`` positions per epoch (the largest part's window count); a
  smaller part walks its shuffled order again from the start for the positions it lacks.

Everything is a pure function of (videos, lengths, window, sampling, seed, world size, rank, position), so a
resumed run draws exactly what an uninterrupted one would, in any process that asks.
"""

from __future__ import annotations

import heapq

import numpy as np

SAMPLING_CHOICES = ("per_video", "by_length")

# Separate generator streams (the first entry after the seed keeps them apart).
_PARTITION, _ORDER, _START = 1, 2, 3


def windows_per_video(lengths: np.ndarray, window: int, sampling: str) -> np.ndarray:
    """Windows each video gives per epoch: 1 (``per_video``) or ``max(1, ceil(length / window))``."""
    lengths = np.asarray(lengths, np.int64)
    if sampling == "per_video":
        return np.ones(len(lengths), np.int64)
    if sampling == "by_length":
        return np.maximum(1, -(-lengths // window))
    raise ValueError(f"data.sampling must be one of {', '.join(SAMPLING_CHOICES)}, got {sampling!r}")


def partition(videos: np.ndarray, counts: np.ndarray, world_size: int, seed: int) -> list[np.ndarray]:
    """Seeded random partition of ``videos`` into ``world_size`` parts balanced by window count.

    Videos are taken by decreasing window count, those of equal count in the order of a permutation drawn from
    ``seed``; each goes to the part with the fewest windows so far (ties: the lowest rank). Placing the long
    videos first keeps the parts within a few windows of each other when a corpus mixes long recordings with
    short clips (in random order, a long video drawn late overshoots its part: the other parts would repeat
    windows to keep batches equal). Each part is returned in corpus order. A rank left without a video (fewer
    videos than ranks) gets the video at position ``rank % len(videos)`` of ``videos``."""
    videos, counts = np.asarray(videos, np.int64), np.asarray(counts, np.int64)
    order = np.random.default_rng([seed, _PARTITION]).permutation(len(videos))
    if (counts == 1).all():
        parts = [np.sort(videos[order[r::world_size]]) for r in range(world_size)]
    else:
        order = order[np.argsort(-counts[order], kind="stable")]
        heap = [(0, r) for r in range(world_size)]
        owner = np.empty(len(videos), np.int64)
        for j in order:
            load, r = heapq.heappop(heap)
            owner[j] = r
            heapq.heappush(heap, (load + int(counts[j]), r))
        parts = [np.sort(videos[owner == r]) for r in range(world_size)]
    return [p if len(p) else videos[[r % len(videos)]] for r, p in enumerate(parts)]


class DrawPlan:
    """The (video, window start) drawn at each position of each rank (see the module docstring).

    ``lengths`` are the stored frame counts of the whole corpus (indexed by corpus video index)."""

    def __init__(self, videos, lengths: np.ndarray, *, window: int, seed: int, world_size: int = 1,
                 sampling: str = "per_video"):
        if not len(videos):
            raise ValueError("no training videos in the corpus")
        self.videos = np.asarray(videos, np.int64)
        self.lengths = np.asarray(lengths, np.int64)
        self.window, self.seed, self.world, self.sampling = window, seed, world_size, sampling
        counts = windows_per_video(self.lengths[self.videos], window, sampling)
        self.parts = partition(self.videos, counts, world_size, seed)
        self.per_rank = max(int(windows_per_video(self.lengths[p], window, sampling).sum()) for p in self.parts)
        self._epochs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def epoch(self, epoch: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """(video of each shuffled slot, its window start) of one rank's epoch (cached: of each rank, the epochs
        next to the one asked for last, so that a batch across an epoch end finds both)."""
        key = (epoch, rank)
        if key not in self._epochs:
            part = self.parts[rank]
            n = self.lengths[part]
            counts = windows_per_video(n, self.window, self.sampling)
            slot_video = np.repeat(np.arange(len(part)), counts)                       # part position per slot
            first = np.concatenate([[0], np.cumsum(counts)[:-1]])
            stratum = np.arange(len(slot_video)) - first[slot_video]                   # k-th window of its video
            u = np.random.default_rng([self.seed, _START, epoch, rank]).random(len(slot_video))
            room = np.maximum(n - self.window + 1, 1)[slot_video]
            starts = np.floor((stratum + u) * room / counts[slot_video]).astype(np.int64)
            starts = np.minimum(starts, room - 1)
            perm = np.random.default_rng([self.seed, _ORDER, epoch, rank]).permutation(len(slot_video))
            for old in [k for k in self._epochs if k[1] == rank and abs(k[0] - epoch) > 1]:
                del self._epochs[old]                      # keep this rank's neighbouring epochs only
            self._epochs[key] = (part[slot_video[perm]], starts[perm])
        return self._epochs[key]

    def locate_many(self, ks, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (B,) of ``rank`` -> (video indices in the corpus (B,), window start frames (B,))."""
        ks = np.asarray(ks, dtype=np.int64).reshape(-1)
        epochs, pos = np.divmod(ks, self.per_rank)
        videos = np.empty(len(ks), np.int64)
        starts = np.empty(len(ks), np.int64)
        for ep in np.unique(epochs):
            sel = epochs == ep
            v, s = self.epoch(int(ep), rank)
            j = pos[sel] % len(v)
            videos[sel], starts[sel] = v[j], s[j]
        return videos, starts
