"""``msmae attention INPUT --model RUN --out DIR``: attention heatmap, automatic sign segments, ELAN file."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "attention", help="attention heatmap, automatic sign segments (JSON, ELAN) and a skeleton strip",
        description="The encoder's attention of one video or pose file as in the paper's appendix F (one layer, "
        "mean over heads, intra-stream blocks averaged over streams, symmetrised), sign boundaries found "
        "on it automatically, and the files: attention.png, attention.npy, segments.json, segments.eaf, "
        "segments_strip.png, and view.html (the page of `msmae view`: video or skeleton, segments and heatmap; "
        "the video goes beside it as view.<suffix>). A video is run through MediaPipe Holistic first (the "
        "`extract` extra).")
    p.add_argument("input", metavar="INPUT", help="video, or pose file (.pose, .parquet, .npy, .npz)")
    p.add_argument("--model", required=True, metavar="RUN", help="run or checkpoint directory (any msmae task)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--layer", type=int, default=-1, help="encoder layer, 0-based, negative from the end (default -1)")
    p.add_argument("--frame-stride", type=int, default=None,
                   help="give the model every n-th frame (default: the stride the run's encoder was pre-trained with, "
                   "else 1; a different one is used with a warning)")
    p.add_argument("--chunk-frames", type=int, default=None,
                   help="model frames per chunk, after the stride (default: the pre-training window, else 300)")
    p.add_argument("--overlap", type=float, default=0.5, help="fraction of a chunk shared with the next (0.5)")
    p.add_argument("--streams", default=None,
                   help="streams averaged into the matrix, e.g. left_hand,right_hand (default: all of the model's)")
    p.add_argument("--kernel-s", type=float, default=None, help="boundary kernel half-width in seconds (0.4)")
    p.add_argument("--min-segment-s", type=float, default=None, help="shortest segment in seconds (0.3)")
    p.add_argument("--threshold-mads", type=float, default=None,
                   help="a boundary must stand this many robust SDs above the clip's median contrast (1.0)")
    p.add_argument("--min-contrast", type=float, default=None, help="and reach at least this contrast (0.005)")
    p.add_argument("--segments", type=int, default=None, metavar="N",
                   help="find exactly N segments (the N-1 strongest boundaries) instead of thresholding")
    p.add_argument("--video", default=None, metavar="FILE",
                   help="for a pose file: the video it was extracted from, linked from the ELAN file and shown on "
                   "the page (default: a video with the same name beside the pose file, if any). A .pose keeps its "
                   "own frame rate; a .npy or .parquet takes the video's unless --fps is given")
    p.add_argument("--language", default="und", metavar="CODE",
                   help="ISO 639-3 code of the signed language, written to the ELAN file, e.g. ase (American), "
                   "gsg (German), bfi (British) Sign Language (default und: undetermined)")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate, for files that do not store it (.npy, .parquet)")
    p.add_argument("--width", type=int, default=None, help="frame width in pixels, for files that do not store it")
    p.add_argument("--height", type=int, default=None, help="frame height in pixels, for files that do not store it")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--json", action="store_true", help="print segments.json")
    p.set_defaults(func=run)


def _load_sequence(path, args):
    """(canonical PoseSequence, the video to show or None, media files to link in ELAN: the video first, which
    ELAN plays, then a .pose, which ELAN's pose viewer reads)."""
    import logging
    from pathlib import Path

    from msmae.cli import CommandError
    from msmae.extract.frames import VIDEO_SUFFIXES

    path = Path(path)
    if path.is_dir() or path.suffix.lower() in VIDEO_SUFFIXES:
        if args.video is not None:
            raise CommandError(f"{path} is a video already: --video is for pose files")
        try:
            from msmae.extract import MissingModelError, video_to_sequence
        except ImportError as e:
            raise CommandError(f"{path}: reading a video needs the `extract` extra "
                               f"(pip install 'msmae[extract]'): {e}") from None
        kwargs = {"fps": args.fps} if args.fps and path.is_dir() else {}
        try:
            seq = video_to_sequence(path, **kwargs)
        except MissingModelError as e:  # names each missing file and where to get it
            raise CommandError(str(e)) from None
        except Exception as e:  # frame reading, MediaPipe: one line for the user
            first = str(e).splitlines()[0] if str(e).strip() else repr(e)
            raise CommandError(f"{path}: keypoint extraction failed: {first}") from None
        return seq, (path if path.is_file() else None), ([path] if path.is_file() else [])
    from msmae.tasks.view import ViewError, read_clip

    try:  # the same reading as `msmae view`: fps from the file where it stores one, the video found beside it
        seq, video, notes = read_clip(path, video=args.video, fps=args.fps, width=args.width, height=args.height)
    except ViewError as e:
        raise CommandError(str(e)) from None
    for note in notes:
        logging.getLogger("msmae.attention").info("%s", note)
    return seq, video, ([video] if video is not None else []) + ([path] if path.suffix.lower() == ".pose" else [])


def _language(code: str) -> str:
    """``--language``: an ISO 639-3 (or 639-1) code, lower case, as ELAN's LANGUAGE element takes it."""
    from msmae.analysis.eaf import check_language
    from msmae.cli import CommandError

    try:
        return check_language(code)
    except ValueError as e:
        raise CommandError(f"--language: {e}") from None


def run(args) -> int:
    import logging
    from pathlib import Path

    from msmae.analysis.report import analyze, run_defaults, summary, write_report
    from msmae.analysis.view import write_view
    from msmae.analysis.segmentation import SegmenterConfig
    from msmae.cli import CommandError
    from msmae.commands._device import resolve_device
    from msmae.poses.normalize import normalize
    from msmae.train.checkpoint import CheckpointError, load_encoder, read_checkpoint_config
    from msmae.train.timescale import checkpoint_frame_stride, checkpoint_source_fps, resolve_frame_stride
    from msmae.utils import json_text, plural

    log = logging.getLogger("msmae.attention")
    src = Path(args.input)
    if not src.exists():
        raise CommandError(f"{src}: no such file")
    device = resolve_device(args.device)
    try:
        meta = read_checkpoint_config(args.model)
        encoder = load_encoder(args.model, device=device)
    except CheckpointError as e:
        raise CommandError(str(e)) from None
    stride, chunk = run_defaults(meta)
    try:  # the encoder's own stride unless --frame-stride says otherwise (then one warning if they differ)
        stride = resolve_frame_stride(args.frame_stride, checkpoint_frame_stride(meta), setting="--frame-stride",
                                      default=stride)
    except ValueError as e:
        raise CommandError(str(e)) from None
    chunk = args.chunk_frames or chunk
    streams = [s.strip() for s in args.streams.split(",") if s.strip()] if args.streams else None
    if streams is not None:
        from msmae.layout import get_layout

        try:
            streams = list(get_layout(streams).names)
        except ValueError as e:
            raise CommandError(f"--streams: {e}") from None
    defaults = SegmenterConfig()
    try:
        segmenter = SegmenterConfig(
            kernel_s=args.kernel_s if args.kernel_s is not None else defaults.kernel_s,
            min_segment_s=args.min_segment_s if args.min_segment_s is not None else defaults.min_segment_s,
            threshold_mads=args.threshold_mads if args.threshold_mads is not None else defaults.threshold_mads,
            min_contrast=args.min_contrast if args.min_contrast is not None else defaults.min_contrast)
    except ValueError as e:
        raise CommandError(str(e)) from None
    if args.segments is not None and args.segments < 1:
        raise CommandError(f"--segments must be at least 1, got {args.segments}")

    language = _language(args.language)
    raw, video, media = _load_sequence(src, args)
    if raw.num_frames == 0:
        raise CommandError(f"{src}: no frames")
    seq = normalize(raw)
    try:
        model_seq = seq.select(encoder.layout)
    except ValueError as e:
        raise CommandError(f"{src}: {e}") from None
    try:
        result = analyze(encoder, model_seq, layer=args.layer, frame_stride=stride, chunk_frames=chunk,
                         overlap=args.overlap, streams=streams, segmenter=segmenter, count=args.segments,
                         progress=True, model_fps=checkpoint_source_fps(meta))
    except ValueError as e:
        raise CommandError(f"{src}: {e}") from None
    paths = write_report(args.out, result, seq, source=str(src), model=str(args.model), media=media,
                         language=language)
    paths["view"] = write_view(args.out, raw, video=video, analysis=result, source=str(src),
                               models=[{"task": str(meta.get("task", "model")), "run": str(args.model)}])
    info = summary(result, source=str(src), model=str(args.model))
    if args.json:
        print(json_text(info, indent=2))
    else:
        print(f"{src.name}: {plural(info['frames'], 'frame')}, {plural(info['num_tokens'], 'token')} of "
              f"{plural(info['token_frames'], 'frame')}; {plural(len(info['segments']), 'segment')}")
        for s in info["segments"]:
            print(f"  #{s['index'] + 1:<3d} frames {s['start_frame']:>5d}-{s['end_frame']:<5d} "
                  f"{s['start_s']:7.2f}-{s['end_s']:.2f} s")
        print(f"wrote {', '.join(p.name for p in paths.values())} to {Path(args.out)}")
    log.debug("attention outputs: %s", paths)
    return 0
