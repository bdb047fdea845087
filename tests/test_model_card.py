"""The model card of RUN/model: written with the final weights, rewritten with the final metrics. (Cards of
real runs are checked in the pretrain, ISLR, SLT and wheel tests.)"""

from __future__ import annotations

import yaml

from msmae.models import MultiStreamEncoder, model_config
from msmae.train import checkpoint as ck
from msmae.train.model_card import hours


def test_card_before_and_after_the_metrics(tmp_path):
    enc = MultiStreamEncoder(config=model_config("tiny", streams="body,hands,face", dim=32, depth=1, heads=2))
    task_config = {"model": {"size": "tiny", "streams": "body,hands,face"}, "data": {"window": 600, "frame_stride": 2},
                   "mask": {"ratio": 0.5, "mode": "same"}, "init": None}
    sd = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    conf = {"task": "pretrain", "model": enc.config.to_dict(), "layout": enc.config.layout.to_dict(),
            "encoder_prefix": "encoder.", "step": 3, "task_config": task_config}
    d = ck.write_final_model(tmp_path / "run", state_dict=sd, config=conf)
    card = (d / "README.md").read_text()
    assert card.startswith("---\n") and yaml.safe_load(card.split("---\n")[1])["library_name"] == "msmae"
    assert "face (112 keypoints)" in card and "1 layer x 2 heads, width 32" in card and "named size `tiny`" in card
    assert "Not yet known" in card
    n = sum(v.numel() for v in sd.values())
    assert f"{n:,} values" in card or f"{n / 1e6:.2f} M values" in card
    assert yaml.safe_load(card.split("```yaml\n")[1].split("```")[0]) == task_config

    metrics = {"steps": 3, "final_loss": 0.25, "eval_loss": 0.125, "mean_baseline_loss": 0.5,
               "videos": {"train": 40, "held_out": 4}, "hours": {"train": 2.5, "held_out": 0.25},
               "corpus": "/data/corpus_ytasl"}
    ck.write_model_card(d, metrics)
    card = (d / "README.md").read_text()
    assert "Not yet known" not in card and "| eval_loss | 0.125 |" in card
    assert "40 for training, 4 held out" in card and "2.5 h of video for training, 15.0 min held out" in card
    assert "# MS-MAE pre-trained encoder: corpus_ytasl" in card and "mask ratio 0.5 (`same`)" in card
    assert sorted(p.name for p in d.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    # The folder is the model: the loader takes it as it is.
    loaded = ck.load_encoder(d)
    assert all((loaded.state_dict()[k] == v).all() for k, v in enc.state_dict().items())


def test_hours_skip_clips_without_a_frame_rate():
    assert hours([(108000, 30.0), (54000, 30.0), (100, 0.0)]) == 1.5  # 3600 s + 1800 s + nothing
