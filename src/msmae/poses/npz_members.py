"""Reading an ``.npz`` safely: only the members asked for (others, whatever their size, are never
decompressed), never pickles, and members whose declared size is absurd refused before they are read."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from msmae.poses.sequence import PoseDataError

# Declared (uncompressed) sizes above these are refused before anything is decompressed: a pose array of
# MAX_NPZ_ARRAY_BYTES holds over 800,000 frames of 160 points; the other members are a few bytes.
MAX_NPZ_ARRAY_BYTES = 1 << 30
MAX_NPZ_SMALL_BYTES = 1 << 20


def read_npz_members(path: Path, wanted: tuple[str, ...], *, required: tuple[str, ...] = (),
                     large: tuple[str, ...] = ("coords", "present")) -> dict[str, np.ndarray]:
    """Only the ``wanted`` members of an ``.npz`` (``required`` ones must exist); others, whatever their
    size, are never read. A member declaring more than MAX_NPZ_ARRAY_BYTES (the ``large`` ones) or
    MAX_NPZ_SMALL_BYTES (the rest) is refused before it is decompressed."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            missing = [k for k in required if k not in infos]
            if missing:
                raise PoseDataError(f"{path}: not a msmae .npz, keys {missing} are missing "
                                    f"(found {sorted(infos)})")
            out = {}
            for key in wanted:
                info = infos.get(key)
                if info is None:
                    continue
                limit = MAX_NPZ_ARRAY_BYTES if key in large else MAX_NPZ_SMALL_BYTES
                if info.file_size > limit:
                    raise PoseDataError(f"{path}: member {key!r} declares {info.file_size:,} bytes, more than "
                                        f"{limit:,}: refused (a damaged or hostile file)")
                with zf.open(info) as fh:
                    out[key] = np.lib.format.read_array(fh, allow_pickle=False)
            return out
    except PoseDataError:
        raise
    except Exception as e:  # BadZipFile, truncated member, pickled objects, ...
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PoseDataError(f"{path}: not a readable .npz file ({text})") from None


