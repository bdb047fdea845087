"""Pre-training windows from a packed corpus: which window sample k is, and two ways to cut a batch of them.

- :class:`WindowDataset` reads windows from the memory-mapped shards (DataLoader workers, resident memory
  flat in the corpus size). One batch is one gather per shard (``__getitems__``), not one Python call and a
  handful of small NumPy calls per window; ``ds[k]`` still gives one window.
- :class:`DeviceWindows` copies this rank's videos once into the memory of the training device (float16
  coordinates, presence bits packed 8 per byte) and cuts every batch there with a few tensor gathers: no
  workers, no host-to-device copies of windows.

Both cut the same windows from :meth:`WindowDataset.locate_many` and return bit-identical tensors, so a run
gives the same data (and losses) on either path, and resume stays exact: the window drawn at position k of a
rank is a pure function of (seed, k, rank, world size) (:mod:`msmae.data.sampling`).

Shapes: B windows, L = ceil(window / frame_stride) frames, K keypoints. A batch is ``coords`` (B, L, K, 2)
float32 (0 where not present), ``present`` (B, L, K) bool (True = detected), ``frame_valid`` (B, L) bool
(False = padding after the end of a short video).
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import torch

from msmae.data.sampling import DrawPlan

log = logging.getLogger(__name__)

ON_DEVICE_CHOICES = ("auto", "true", "false")


class WindowDataset(torch.utils.data.Dataset):
    """Sample k of this rank -> a window of one video.

    Which window is drawn at each position is :class:`~msmae.data.sampling.DrawPlan`'s: rank r of W owns
    ``part`` (a seeded random partition of ``videos``; the device-resident path loads only those) and shuffles
    its windows every epoch of ``per_rank`` positions with (seed, epoch, rank); ``sampling`` chooses one window
    per video per epoch (``per_video``) or windows in proportion to length (``by_length``). Videos shorter than
    the window start at 0 and are padded (``frame_valid`` False).
    """

    def __init__(self, corpus, videos: list[int], *, keypoints: list[int], window: int, frame_stride: int,
                 seed: int, rank: int = 0, world_size: int = 1, length: int = 1 << 62,
                 sampling: str = "per_video", plan: DrawPlan | None = None):
        self.corpus, self.videos, self.keypoints = corpus, list(videos), np.asarray(keypoints, dtype=np.int64)
        self.window, self.stride, self.seed = window, frame_stride, seed
        self.rank, self.world = rank, world_size
        self.length = length
        self.out_len = math.ceil(window / frame_stride)
        # Per-entry arrays of the whole corpus (for the batched gather).
        self._shard = np.array([e.shard for e in corpus.entries], dtype=np.int64)
        self._offset = np.array([e.offset for e in corpus.entries], dtype=np.int64)
        self._len = np.array([e.length for e in corpus.entries], dtype=np.int64)
        self.plan = plan or DrawPlan(self.videos, self._len, window=window, seed=seed, world_size=world_size,
                                     sampling=sampling)
        self._part = self.plan.parts[rank]
        self.part = [int(v) for v in self._part]
        self.per_rank = self.plan.per_rank
        self._all_points = len(self.keypoints) == corpus.num_points and \
            bool((self.keypoints == np.arange(corpus.num_points)).all())

    def __len__(self) -> int:
        return self.length

    def locate_many(self, ks) -> tuple[np.ndarray, np.ndarray]:
        """Sample positions (B,) of this rank -> (video indices in the corpus (B,), window start frames (B,))."""
        return self.plan.locate_many(ks, self.rank)

    def locate(self, k: int) -> tuple[int, int]:
        """Sample k of this rank -> (video index in corpus, window start frame)."""
        v, s = self.locate_many([k])
        return int(v[0]), int(s[0])

    def load(self, video: int, start: int) -> dict[str, torch.Tensor]:
        """One window, read with per-window NumPy calls (evaluation, and the reference for the batched path)."""
        c, p = self.corpus.frames(video, start, start + self.window, self.stride)
        c, p = c[:, self.keypoints], p[:, self.keypoints]
        n = c.shape[0]
        coords = np.zeros((self.out_len, len(self.keypoints), 2), np.float32)
        present = np.zeros((self.out_len, len(self.keypoints)), bool)
        valid = np.zeros(self.out_len, bool)
        coords[:n], present[:n], valid[:n] = c, p, True
        coords[~present] = 0.0
        return {"coords": torch.from_numpy(coords), "present": torch.from_numpy(present),
                "frame_valid": torch.from_numpy(valid)}

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return self.load(*self.locate(k))

    def load_batch(self, videos: np.ndarray, starts: np.ndarray) -> dict[str, torch.Tensor]:
        """Windows (video, start) -> one batch, with one gather per shard touched (the same tensors as
        stacking :meth:`load` of each window)."""
        videos, starts = np.asarray(videos, np.int64), np.asarray(starts, np.int64)
        b, n_out, k = len(videos), self.out_len, len(self.keypoints)
        if b == 0:
            raise ValueError("load_batch needs at least one window")
        frame = starts[:, None] + np.arange(n_out, dtype=np.int64)[None] * self.stride       # (B, L)
        lengths = self._len[videos][:, None]
        valid = frame < lengths
        idx = self._offset[videos][:, None] + np.minimum(frame, lengths - 1)                   # (B, L) in shard
        kp = None if self._all_points else self.keypoints
        shards = self._shard[videos]
        if (shards == shards[0]).all():                      # the usual case with large shards
            cmap, bmap = self.corpus._shard(int(shards[0]))
            coords, present = cut_windows(_pairs(cmap), bmap, idx, valid, self.corpus.num_points, kp)
        else:
            coords = torch.empty((b, n_out, k, 2), dtype=torch.float32)
            present = np.empty((b, n_out, k), bool)
            for s in np.unique(shards):
                rows = np.flatnonzero(shards == s)
                cmap, bmap = self.corpus._shard(int(s))
                coords[torch.from_numpy(rows)], present[rows] = cut_windows(
                    _pairs(cmap), bmap, idx[rows], valid[rows], self.corpus.num_points, kp)
        return {"coords": coords, "present": torch.from_numpy(present), "frame_valid": torch.from_numpy(valid)}

    def __getitems__(self, ks: list[int]) -> dict[str, torch.Tensor]:
        """The DataLoader's batched fetch: a whole batch in one call (see :func:`collate_windows`)."""
        return self.load_batch(*self.locate_many(ks))


def _pairs(coords: np.ndarray) -> np.ndarray:
    """(F, K, 2) float16 -> (F, K) int32 view: a point's (x, y) as one number, gathered and zeroed at once."""
    return coords.view(np.int32)[..., 0]


def cut_windows(pairs: np.ndarray, bits: np.ndarray, idx: np.ndarray, valid: np.ndarray, count: int,
                keypoints: np.ndarray | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """The gather shared by the worker path and the device-resident path on the CPU.

    pairs (F, K0) int32 (see :func:`_pairs`), bits (F, ceil(count/8)) uint8, idx (B, L) frame rows,
    valid (B, L) bool -> coords (B, L, K, 2) float32 tensor (0 where absent or padding), present (B, L, K) bool,
    keeping ``keypoints`` of the K0 (all when None)."""
    b = np.asarray(bits[idx])                                                  # (B, L, nb)
    b *= valid[..., None]                                                      # padding frames: nothing present
    present = np.unpackbits(b, axis=-1, count=count).view(bool)
    if keypoints is None:
        g = np.asarray(pairs[idx])                                             # (B, L, K)
    else:
        present = present[..., keypoints]
        g = np.asarray(pairs[idx[..., None], keypoints])
    g *= present
    coords = torch.from_numpy(g.view(np.float16).reshape(*idx.shape, -1, 2)).float()  # torch converts fast
    return coords, present


def collate_windows(items) -> dict[str, torch.Tensor]:
    """DataLoader ``collate_fn``: a batch from ``__getitems__`` passes through; single windows are stacked."""
    if isinstance(items, dict):
        return items
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class FromSampler(torch.utils.data.Sampler):
    """Indices start, start+1, ... (the data position of a resumed run)."""

    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


# -------------------------------------------------------------------------------------- device-resident
def bytes_per_frame(num_keypoints: int) -> int:
    """Device memory of one frame in the device-resident form: float16 (x, y) + presence bits."""
    return num_keypoints * 4 + math.ceil(num_keypoints / 8)


def device_bytes(dataset: WindowDataset) -> int:
    """Device memory the device-resident copy of this rank's part needs (bytes)."""
    frames = int(dataset._len[dataset._part].sum())
    return frames * bytes_per_frame(len(dataset.keypoints))


def free_memory(device: torch.device) -> int:
    """Free bytes on ``device``: CUDA's free memory, or the host's MemAvailable for the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def choose_on_device(setting: str, need: int, free: int, fraction: float) -> tuple[bool, str]:
    """``data.on_device`` (auto | true | false) -> (use the device-resident path, the reason in words).

    The corpus part goes on the device when it needs at most ``fraction`` of the free memory; when it does
    not fit, ``true`` falls back to the worker path too (with the reason), rather than run out of memory."""
    gb = 1e9
    fits = need <= fraction * free
    size = f"this rank's corpus part needs {need / gb:.2f} GB; {fraction:.0%} of the free {free / gb:.2f} GB"
    if setting == "false":
        return False, "data.on_device=false: windows are read by DataLoader workers"
    if fits:
        return True, f"device-resident corpus: {size} is {fraction * free / gb:.2f} GB"
    return False, (f"the corpus does not fit on the device ({size} is only {fraction * free / gb:.2f} GB); "
                   f"reading windows with DataLoader workers instead (raise data.device_memory_fraction, use "
                   f"more processes, or set data.on_device=false to silence this)")


class DeviceWindows:
    """This rank's part of the corpus held in the memory of ``device``; batches are cut there.

    coords: (F, K, 2) float16, bits: (F, ceil(K/8)) uint8 (``np.packbits`` order), for the F frames of the
    part's videos back to back. :meth:`batch` gives the same tensors as ``WindowDataset.load_batch`` on the
    same positions.
    """

    def __init__(self, dataset: WindowDataset, device: torch.device | str, *, chunk_frames: int = 1 << 18,
                 kernel: str = "auto"):
        self.ds = dataset
        self.device = torch.device(device)
        # On the CPU, NumPy's bit unpacking and in-place products beat torch's CPU kernels several times over;
        # both kernels give the same tensors (tests run the torch one on the CPU too).
        self.kernel = kernel if kernel != "auto" else ("numpy" if self.device.type == "cpu" else "torch")
        if self.kernel not in ("numpy", "torch") or (self.kernel == "numpy" and self.device.type != "cpu"):
            raise ValueError(f"kernel must be 'torch', or 'numpy' on the CPU; got {kernel!r} on {self.device}")
        corpus, kp = dataset.corpus, dataset.keypoints
        k = len(kp)
        part = dataset._part
        lengths = dataset._len[part]
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        total = int(lengths.sum())
        self.coords = torch.empty((total, k, 2), dtype=torch.float16, device=self.device)
        self.bits = torch.empty((total, math.ceil(k / 8)), dtype=torch.uint8, device=self.device)
        # Copy video by video, gathering host chunks of ~chunk_frames frames so host memory stays bounded.
        buf_c, buf_b, at, filled = [], [], 0, 0
        for v, n in zip(part, lengths):
            e = corpus.entries[int(v)]
            cmap, bmap = corpus._shard(e.shard)
            c = np.asarray(cmap[e.offset:e.offset + e.length])
            b = np.asarray(bmap[e.offset:e.offset + e.length])
            if not dataset._all_points:
                c = c[:, kp]
                b = np.packbits(np.unpackbits(b, axis=1, count=corpus.num_points)[:, kp], axis=1)
            buf_c.append(c)
            buf_b.append(b)
            filled += int(n)
            if filled >= chunk_frames:
                at = self._put(buf_c, buf_b, at)
                buf_c, buf_b, filled = [], [], 0
        self._put(buf_c, buf_b, at)
        self.row_of = np.full(len(corpus.entries), -1, dtype=np.int64)
        self.row_of[part] = np.arange(len(part))
        self.offsets = torch.from_numpy(offsets).to(self.device)
        self.lengths = torch.from_numpy(lengths.astype(np.int64)).to(self.device)
        self.steps = torch.arange(dataset.out_len, device=self.device) * dataset.stride           # (L,)
        self.shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=self.device)               # MSB first
        self.nbytes = self.coords.numel() * 2 + self.bits.numel()
        # A point's float16 (x, y) as one int32: gathered and zeroed (absent, padding) without broadcasting.
        self.pairs = self.coords.view(torch.int32).view(total, k)
        if self.kernel == "numpy":
            self._pairs_np, self._bits_np = self.pairs.numpy(), self.bits.numpy()
            self._offsets_np, self._lengths_np = offsets, lengths.astype(np.int64)
            self._steps_np = np.arange(dataset.out_len, dtype=np.int64) * dataset.stride

    def _put(self, buf_c: list, buf_b: list, at: int) -> int:
        if not buf_c:
            return at
        c, b = np.concatenate(buf_c), np.concatenate(buf_b)
        self.coords[at:at + len(c)].copy_(torch.from_numpy(c))
        self.bits[at:at + len(b)].copy_(torch.from_numpy(b))
        return at + len(c)

    def batch(self, ks) -> dict[str, torch.Tensor]:
        """Sample positions (B,) of this rank -> a batch on the device."""
        videos, starts = self.ds.locate_many(ks)
        rows = self.row_of[videos]
        if (rows < 0).any():
            raise ValueError("a window of a video outside this rank's part was asked for")
        if self.kernel == "numpy":
            frame = starts[:, None] + self._steps_np[None]                                         # (B, L)
            n = self._lengths_np[rows][:, None]
            valid = frame < n
            idx = self._offsets_np[rows][:, None] + np.minimum(frame, n - 1)
            coords, present = cut_windows(self._pairs_np, self._bits_np, idx, valid, len(self.ds.keypoints))
            return {"coords": coords, "present": torch.from_numpy(present), "frame_valid": torch.from_numpy(valid)}
        dev = self.device
        rows_t = torch.from_numpy(rows).to(dev, non_blocking=True)
        starts_t = torch.from_numpy(starts).to(dev, non_blocking=True)
        frame = starts_t[:, None] + self.steps[None]                                             # (B, L)
        n = self.lengths[rows_t][:, None]
        valid = frame < n
        idx = self.offsets[rows_t][:, None] + torch.minimum(frame, n - 1)
        k, (b, n_out) = len(self.ds.keypoints), idx.shape
        flat = idx.flatten()
        bits = self.bits.index_select(0, flat) * valid.flatten()[:, None]                       # (B*L, nb)
        present = ((bits[..., None] >> self.shifts) & 1).flatten(-2)[:, :k].bool()             # (B*L, K)
        pairs = self.pairs.index_select(0, flat) * present                                      # (B*L, K) int32
        coords = pairs.view(torch.float16).view(b, n_out, k, 2).float()                          # (B, L, K, 2)
        return {"coords": coords, "present": present.view(b, n_out, k), "frame_valid": valid}


def batch_stream(ds: WindowDataset, start: int, stop: int, batch_size: int, *, device: torch.device,
                 on_device: str = "auto", memory_fraction: float = 0.5, num_workers: int = 2, processes: int = 1):
    """Batches of positions start, start + 1, ... stop - 1 of this rank, on ``device``.

    ``processes``: training processes on this machine. On the CPU they share the host's memory, so each
    budgets ``1 / processes`` of it (a GPU's free memory is its own rank's).

    Returns (iterator of batch dicts, path) with path ``"device"`` (device-resident, see :func:`choose_on_device`)
    or ``"workers"`` (memory-mapped shards read by ``num_workers`` DataLoader processes; 0 = in this process)."""
    device = torch.device(device)
    sharing = max(1, processes) if device.type == "cpu" else 1
    use, why = choose_on_device(on_device, device_bytes(ds), free_memory(device) // sharing, memory_fraction)
    if sharing > 1:
        why += f" (free host memory divided among the {sharing} processes on this machine)"
    if on_device == "true" and not use:
        log.warning(why)
    else:
        log.info(why)
    if use:
        resident = DeviceWindows(ds, device)

        def gen():
            for a in range(start, stop, batch_size):
                yield resident.batch(np.arange(a, min(a + batch_size, stop)))

        return gen(), "device"
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, sampler=FromSampler(start, stop), num_workers=num_workers,
        collate_fn=collate_windows, pin_memory=device.type == "cuda", drop_last=False, persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None)

    def moved():
        for b in loader:
            yield {k: v.to(device, non_blocking=True) for k, v in b.items()}

    return moved(), "workers"
