"""``msmae view INPUT --out DIR [--model RUN ...]``: one offline HTML page for a clip."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "view", help="one offline HTML page: video + skeleton, segments, attention heatmap, predictions",
        description="Writes DIR/view.html, a page that opens offline (file://) and plays the clip with the "
        "skeleton msmae read drawn over it (or the skeleton alone for a pose file), the automatic segments on a "
        "timeline (click to jump), a strip per stream showing where detections are missing, the attention "
        "heatmap with the playhead on both axes, and the predictions. Each --model adds what that run can say: "
        "a pre-training run -> attention heatmap and segments; an ISLR run -> top-k signs of the clip and of "
        "each segment; an SLT run -> the translation. The video is placed beside the page as view.<suffix> "
        "(a copy; the original is never changed). Keys: space play/pause, left/right one frame, [ and ] "
        "previous/next segment.")
    p.add_argument("input", metavar="INPUT",
                   help="video or frame folder (keypoints extracted on the fly: the `extract` extra), or a pose "
                   "file (.pose, .parquet, .npy, .npz)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--model", action="append", default=[], metavar="RUN",
                   help="a pre-training, ISLR or SLT run or checkpoint directory; repeat for several")
    p.add_argument("--video", metavar="FILE",
                   help="for a pose file: the video it was extracted from, shown under the skeleton (default: a video "
                   "with the same name beside it). A .pose keeps its own frame rate (a --frame-stride 2 extraction "
                   "plays at half the video's); a .npy or .parquet takes the video's unless --fps is given")
    p.add_argument("--segments", type=int, default=None, metavar="N",
                   help="find exactly N segments instead of thresholding the boundary contrast")
    p.add_argument("--layer", type=int, default=-1, help="encoder layer of the heatmap (default -1, the last)")
    p.add_argument("--top", type=int, default=5, help="ISLR: signs listed per segment and for the clip (5)")
    p.add_argument("--beams", type=int, default=None, help="SLT: beam size (default: the run's)")
    p.add_argument("--fps", type=float, default=None, help="frame rate, for files that do not store it")
    p.add_argument("--width", type=int, default=None, help="frame width in pixels, for files that do not store it")
    p.add_argument("--height", type=int, default=None, help="frame height in pixels, for files that do not store it")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--json", action="store_true", help="print what the page shows as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from msmae.analysis.view import PAGE
    from msmae.cli import CommandError
    from msmae.commands._device import resolve_device
    from msmae.tasks.view import ViewError, make_view
    from msmae.utils import json_text, plural

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out}: is a file, not a folder; name a folder for {PAGE} (it is created)")
    if (out / PAGE).is_dir():
        raise CommandError(f"--out {out}: {out / PAGE} is a folder; the page cannot be written there")
    device = resolve_device(args.device)
    try:
        info = make_view(args.input, args.out, models=args.model, video=args.video, fps=args.fps,
                         width=args.width, height=args.height, layer=args.layer, segments=args.segments,
                         top=args.top, beams=args.beams, device=device, progress=True)
    except ViewError as e:
        raise CommandError(str(e)) from None
    if args.json:
        print(json_text(info, indent=2))
        return 0
    print(f"{args.input}: {plural(info['frames'], 'frame')} at {info['fps']:g} fps, "
          f"{plural(len(info['segments']), 'segment')}"
          + (f", video {info['video']}" if info["video"] else ", skeleton only"))
    for r in info["islr"]:
        best = r["clip"][0]
        print(f"  {r['run']}: {best['label']} ({best['probability']:.3f}) for the whole clip")
    for r in info["slt"]:
        print(f"  {r['run']}: {r['text']}")
    print(f"page: {info['page']} ({info['bytes'] / 1e6:.2f} MB)")
    return 0
