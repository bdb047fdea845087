"""DiffMask / SameMask token masking (issue 3 item 2)."""

from __future__ import annotations

import pytest
import torch

from msmae.models.masking import make_visible


def _valid(lengths, p=3, nt=12):
    """token_valid (B, P, Nt): sample b has lengths[b] valid time steps, then padding."""
    tv = torch.zeros(len(lengths), p, nt, dtype=torch.bool)
    for b, n in enumerate(lengths):
        tv[b, :, :n] = True
    return tv


@pytest.mark.parametrize("mode", ["diff", "same"])
def test_counts_partition_and_padding(mode):
    tv = _valid([12, 7, 1, 0])
    vis = make_visible(tv, 0.5, mode, torch.Generator().manual_seed(0))
    masked = tv & ~vis
    padding = ~tv
    # visible, masked and padding are disjoint and cover every token
    assert not (vis & masked).any() and not (vis & padding).any() and not (masked & padding).any()
    assert torch.equal(vis | masked | padding, torch.ones_like(tv))
    # round(0.5 * n) masked per stream (Python rounding: 3.5 -> 4), at least one stays visible
    expected = {0: 6, 1: 4, 2: 0, 3: 0}
    for b, n_mask in expected.items():
        assert masked[b].sum(dim=1).tolist() == [n_mask] * 3, (b, masked[b].sum(dim=1))
    assert vis[2].sum(dim=1).tolist() == [1, 1, 1]
    assert not vis[3].any() and not masked[3].any()


def test_diff_mask_places_differ_same_mask_places_agree():
    tv = _valid([12] * 16)
    diff = make_visible(tv, 0.5, "diff", torch.Generator().manual_seed(1))
    same = make_visible(tv, 0.5, "same", torch.Generator().manual_seed(1))
    # SameMask: every stream hides the same time steps
    assert torch.equal(same[:, 0], same[:, 1]) and torch.equal(same[:, 0], same[:, 2])
    # DiffMask: the same count per stream, but the places differ (16 samples x 3 streams: certain in practice)
    assert (diff.sum(dim=2) == 6).all()
    differs = (diff[:, 0] != diff[:, 1]).any(dim=1) | (diff[:, 1] != diff[:, 2]).any(dim=1)
    assert differs.sum() >= 14


def test_generator_makes_it_deterministic():
    tv = _valid([12, 9, 5])
    a = make_visible(tv, 0.5, "diff", torch.Generator().manual_seed(7))
    b = make_visible(tv, 0.5, "diff", torch.Generator().manual_seed(7))
    c = make_visible(tv, 0.5, "diff", torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_every_valid_step_is_equally_likely_to_be_masked():
    tv = _valid([10] * 2000, p=2, nt=12)
    masked = tv & ~make_visible(tv, 0.3, "diff", torch.Generator().manual_seed(3))
    freq = masked[:, :, :10].float().mean(dim=0)          # (P, 10): about 0.3 everywhere
    assert (freq - 0.3).abs().max() < 0.05, freq
    assert not masked[:, :, 10:].any()


def test_ratio_extremes_and_errors():
    tv = _valid([12, 4])
    assert torch.equal(make_visible(tv, 0.0, "diff"), tv)
    all_but_one = make_visible(tv, 1.0, "same", torch.Generator().manual_seed(0))
    assert all_but_one.sum(dim=2).tolist() == [[1, 1, 1], [1, 1, 1]]
    with pytest.raises(ValueError, match="mask mode"):
        make_visible(tv, 0.5, "random")
    with pytest.raises(ValueError, match="ratio"):
        make_visible(tv, 1.5, "diff")
    with pytest.raises(ValueError, match="token_valid"):
        make_visible(tv[0], 0.5, "diff")
