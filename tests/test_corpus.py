"""`msmae pack` and the packed corpus: round trip, incremental re-runs, bad inputs, memory maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared_path
from msmae.cli import main
from msmae.corpus import CorpusError, PackedCorpus, pack_corpus, pack_sequences
from msmae.poses import PoseSequence
from msmae.poses.normalize import normalize
from msmae.poses.readers import read_sequence
from msmae.poses.writers import write_npz


def make_seq(T: int, seed: int, source: str | None = None) -> PoseSequence:
    rng = np.random.default_rng(seed)
    c = rng.normal(scale=0.2, size=(T, 160, 2)) + 0.5
    c[:, 0] = [0.3, 0.5]  # shoulders present and apart, so normalisation is the shoulder method
    c[:, 1] = [0.6, 0.5]
    p = rng.random((T, 160)) > 0.3
    p[:, :2] = True
    return PoseSequence(c, p, 25.0, width=640, height=480, source=source)


def test_pack_npz_round_trip_and_rerun_adds_only_new(tmp_path):
    src = tmp_path / "src"
    seqs = [make_seq(30 + 7 * i, i) for i in range(4)]
    for i, s in enumerate(seqs[:3]):
        write_npz(s, src / f"v{i}.npz")
    out = tmp_path / "corpus"
    s1 = pack_corpus([src], out, progress=False, shard_frames=50)
    assert len(s1.added) == 3 and not s1.failed and s1.total_frames == 30 + 37 + 44
    c = PackedCorpus(out)
    assert len(c) == 3 and len({e.shard for e in c.entries}) >= 2  # small shards -> several files
    for i in range(3):
        e = next(e for e in c.entries if e.id == f"v{i}")
        xy, p = c.frames(c.entries.index(e))
        ref = normalize(seqs[i])
        assert np.array_equal(p, ref.present)
        np.testing.assert_allclose(xy, ref.coords, atol=2e-3)  # float16 storage
        assert e.fps == 25.0 and e.width == 640 and e.height == 480
    # Strided window access reads the same frames as slicing the whole video.
    xy_all, _ = c.frames(1)
    xy_w, _ = c.frames(1, 5, 25, 2)
    assert np.array_equal(xy_w, xy_all[5:25:2])
    # Re-run: nothing new; then one new file is the only one added.
    s2 = pack_corpus([src], out, progress=False)
    assert not s2.added and len(s2.unchanged) == 3
    write_npz(seqs[3], src / "v3.npz")
    s3 = pack_corpus([src], out, progress=False)
    assert [p.split("/")[-1] for p in s3.added] == ["v3.npz"] and s3.total_videos == 4
    assert json.loads((out / "corpus.json").read_text())["videos"] == 4


def test_corrupt_inputs_are_reported_and_skipped(tmp_path):
    src = tmp_path / "src"
    write_npz(make_seq(20, 0), src / "good.npz")
    (src / "broken.pose").write_bytes(b"this is not a pose file")
    (src / "empty.npy").write_bytes(b"")
    s = pack_corpus([src], tmp_path / "c", progress=False)
    assert len(s.added) == 1 and {f["path"].split("/")[-1] for f in s.failed} == {"broken.pose", "empty.npy"}
    assert all(f["reason"] for f in s.failed)
    # The CLI exits 1 when something failed, and says what.
    assert main(["pack", str(src), "--out", str(tmp_path / "c2"), "--json"]) == 1


def test_no_inputs_and_not_a_corpus(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no readable pose files"):
        pack_corpus([tmp_path / "empty"], tmp_path / "c", progress=False)
    with pytest.raises(CorpusError, match="not an msmae corpus"):
        PackedCorpus(tmp_path / "empty")


def test_cli_pack_bad_inputs_are_one_line_errors(tmp_path, capsys):
    from msmae.cli import main

    assert main(["pack", str(tmp_path / "missing"), "--out", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "missing" in err and "Traceback" not in err
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not a pose file")
    assert main(["pack", str(video), "--out", str(tmp_path / "c")]) == 1
    assert "clip.mp4" in capsys.readouterr().err
    assert main(["pack", str(tmp_path), "--out", str(tmp_path / "c"), "--shard-frames", "0"]) == 1


def test_memory_maps_do_not_load_the_corpus(tmp_path):
    seqs = [make_seq(2000, i, source=f"long{i}") for i in range(5)]
    pack_sequences(seqs, tmp_path / "c", shard_frames=4000)
    c = PackedCorpus(tmp_path / "c")
    c.frames(4, 100, 200)
    coords, bits = c._shard(c.entries[4].shard)
    assert isinstance(coords, np.memmap) and isinstance(bits, np.memmap)


def test_pack_real_shared_poses(tmp_path):
    sources = [shared_path("gislr-asl-signs"), shared_path("fingerspelling-ase"),
               shared_path("dgs-corpus-sentences")]
    s = pack_corpus(sources, tmp_path / "c", workers=2, progress=False)
    assert not s.failed and len(s.added) == 84 + 26 + 32
    c = PackedCorpus(tmp_path / "c")
    # A DGS sentence: same presence as reading it directly, coordinates normalised.
    i = next(i for i, e in enumerate(c.entries) if e.source.endswith("train_1_original.pose"))
    ref = normalize(read_sequence(c.entries[i].source))
    xy, p = c.frames(i)
    assert np.array_equal(p, ref.present)
    np.testing.assert_allclose(xy, ref.coords, atol=5e-3)
