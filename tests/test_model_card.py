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


HOSTILE = ["<img src=x onerror=alert(1)>", "x\n# Pwned heading", "[click](javascript:alert(1))",
           "$(touch PWNED)`rm -rf ~`", "```\n<script>alert(1)</script>", "a'b\"c | d"]


def test_hostile_folder_names_stay_text_in_the_card_and_quoted_in_its_commands(tmp_path):
    import shlex

    from markdown_it import MarkdownIt

    enc = MultiStreamEncoder(config=model_config("tiny", dim=16, depth=1, heads=2))
    name = "".join(HOSTILE)
    task_config = {"model": {"size": "tiny"}, "data": {"dataset": name, "annotations": name, "poses": name},
                   "init": name}
    conf = {"task": "islr", "model": enc.config.to_dict(), "layout": enc.config.layout.to_dict(), "mode": "finetune",
            "classes": ["a", "b"], "pooling": name, "task_config": task_config}
    run = tmp_path / name
    d = ck.write_final_model(run, state_dict={f"encoder.{k}": v for k, v in enc.state_dict().items()}, config=conf)
    ck.write_model_card(d, {"split": name, "top1": 0.5, "examples": {name: 3}, "excluded": {name: 1},
                            "selected_on": {"split": "val", "metric": name, "epoch": 1}})
    card = (d / "README.md").read_text()
    tokens = MarkdownIt("commonmark").parse(card)
    html = MarkdownIt("commonmark").render(card)
    assert [t.tag for t in tokens if t.type == "heading_open"] == ["h1"] + ["h2"] * 6  # the card's own headings
    assert not [t for t in tokens if t.type in ("html_block", "html_inline")]
    assert "<img" not in html and "<script" not in html and "javascript:" not in html.replace(
        "[click](javascript:alert(1))", "")
    assert not [t for t in tokens if t.type == "inline" and any(c.type == "link_open" for c in t.children or ())]
    # The usage commands paste back as the folder's path, $(...) and `...` included.
    commands = [t.content for t in tokens if t.type == "fence" and t.info == "sh"]
    assert len(commands) == 1 and shlex.split(commands[0]) == ["msmae", "predict", "VIDEO_OR_POSE_FILE", "--model",
                                                               str(d)]
    blocks = [t.content for t in tokens if t.type == "fence" and t.info == "python"]
    assert blocks and all(repr(str(d)) in b for b in blocks)
    assert yaml.safe_load([t.content for t in tokens if t.type == "fence" and t.info == "yaml"][0]) == task_config
