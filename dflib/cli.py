"""The ``dflib`` command line: run, check, synth, predict, bench."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from . import config
from .devices import DEVICES
from .faces_fields import SAMPLING_STRATEGIES
from .synth_fields import DEMO

EXIT_BAD_INPUT = 2
EXIT_SIGNAL = 128  # + the signal's number, as shells report a process a signal ended


def _cmd_check(args: argparse.Namespace) -> int:
    import warnings

    from . import datasets, paths, stages

    profile = config.load(args.profile)
    datasets.check_data_root(profile)
    stage_names = ", ".join(s.name for s in config.STAGES)
    dataset = profile.shared["dataset"]
    if datasets.generates(dataset) and not paths.resolve(profile.shared["data_root"]).exists():
        splits = f"splits: known once stage index has generated the {dataset} dataset"
    else:
        later = "once stage index runs"
        try:
            result = stages.read_dataset(profile)
            notes = [line for line in (
                datasets.absent_line(result, f"{profile.run.absent_csv}, {later}"),
                datasets.left_out_line(result, f"{profile.run.left_out_csv}, {later}")) if line]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                splits = datasets.check_splits(profile.shared, profile.sections["index"],
                                               result)
        except datasets.DatasetError as exc:
            print(f"error: {args.profile}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        for note in notes + [str(w.message) for w in caught]:
            print(f"warning: {note}", file=sys.stderr)
    print(f"{args.profile}: ok (run folder {profile.run.root}; stages {stage_names}; {splits})")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from . import datasets, notebooks, paths

    profile = config.load(args.profile)
    datasets.check_data_root(profile)
    notebooks.select_stages(args.stages)  # refuse unknown stage names before any work
    for seed in args.seeds or ():  # every seed before the first one's run
        config.SHARED["seed"].check("--seeds", seed)
    try:
        if args.seeds is not None:
            root = notebooks.run_seeds(profile, args.seeds, args.stages, log_output=not args.quiet)
        else:
            root = notebooks.run_profile(profile, args.stages, log_output=not args.quiet)
    except (notebooks.StageFailed, paths.RunLocked) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except notebooks.Interrupted as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_SIGNAL + exc.signum
    except KeyboardInterrupt as exc:
        print(f"{notebooks.how_stopped(notebooks.signal_of(exc))} before the first stage; run "
              "again to resume", file=sys.stderr)
        return EXIT_SIGNAL + notebooks.signal_of(exc)
    print(f"[dflib] run complete: {root}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from . import synth

    DEMO["demo_seed"].check("--seed", args.seed)
    problem = synth.folder_problem(args.out_dir, {"seed": args.seed})
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    manifest = synth.generate(args.out_dir, seed=args.seed)
    print(f"{args.out_dir}: {len(manifest)} videos "
          f"({int((manifest['label'] == 0).sum())} real, {int(manifest['label'].sum())} fake)")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    import pandas as pd

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep stderr for dflib's own lines
    from . import io, paths, predict  # loads torch before TensorFlow (dflib.reload)

    # Like the INPUT arguments, --run starts at the working directory (profiles' paths
    # start at the project root: dflib.paths.resolve).
    run = paths.RunPaths(Path(args.run).expanduser().absolute())
    if not run.results_csv.is_file():
        print(f"error: --run: {run.results_csv} not found; point --run at a run folder "
              "(outputs/<run>) where the study has been run", file=sys.stderr)
        return EXIT_BAD_INPUT
    problem = _output_problem("--frames-csv", args.frames_csv)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:  # NaN fails too
        problem = f"--threshold: {args.threshold} is not a fake probability in [0, 1]"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        method = predict.check_method(run, args.method, want_frames=args.frames_csv is not None)
    except (ValueError, OSError) as exc:  # one line naming the file or the argument
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        inputs = predict.expand_inputs(args.videos)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result = predict.predict_videos(inputs, run, method, args.threshold)
    for record in result.records:
        print(json.dumps(record), flush=True)
    if args.frames_csv is not None:
        io.write_csv(result.frames if result.frames is not None
                     else pd.DataFrame(columns=list(predict.FRAME_COLUMNS)), args.frames_csv)
    failed = [r for r in result.records if r["status"] == predict.STATUS_ERROR]
    for r in failed:
        print(f"error: {r['reason']}", file=sys.stderr)
    return 1 if failed else 0


def _output_problem(flag: str, target: Path | None) -> str | None:
    """One line when a file a command writes at its end (``--out``, ``--frames-csv``) could
    not be written there, so that it is refused before the work; None when it can be."""
    if target is None:
        return None
    if target.is_dir():
        return f"{flag}: {target} is a folder; name the file to write"
    existing = next(p for p in target.absolute().parents if p.exists())
    if not existing.is_dir():
        return f"{flag}: {existing} is not a folder, so {target} cannot be written"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{flag}: {existing} is not writable by this user"
    return None


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import bench, io

    problem = _output_problem("--out", getattr(args, "out", None))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT

    if args.bench == "footage":
        for name, folder in bench.make_footage(args.out_dir, args.frames,
                                               face_scale=args.face_scale).items():
            print(f"{name}: {folder}")
        return 0
    if args.bench in ("extract", "steps", "parallel"):
        overrides = {k: v for k, v in (("factor", args.factor),
                                       ("min_face_size", args.min_face_size),
                                       ("detect_max_side", args.detect_max_side),
                                       ("redetect_every", args.redetect_every))
                     if v is not None}
        fields = config.STAGE_BY_NAME["faces"].fields  # the profile's ranges (ProfileError)
        overrides = {k: fields[k].check(f"--{k.replace('_', '-')}", v)
                     for k, v in overrides.items()}
    if args.bench == "decode":
        table = bench.bench_decode(args.paths, args.frames, args.sampling, args.every_k,
                                   args.repeats)
    elif args.bench == "extract":
        table = bench.bench_extract(args.paths, args.frames, args.device, overrides,
                                    repeats=args.repeats)
    elif args.bench == "steps":
        table = bench.bench_steps(args.paths, args.frames, args.device, overrides)
    elif args.bench == "parallel":
        table = bench.bench_parallel(args.paths, args.frames, args.workers, args.device,
                                     overrides, repeats=args.repeats)
    elif args.bench == "train-feed":
        table = bench.bench_train_feed(args.run, args.videos, args.faces_per_video,
                                       args.img_size, args.arch, args.batch_size, args.workers,
                                       args.steps, args.clip_len, args.clip_size, args.seq_len)
    else:
        table = bench.bench_train_memory(args.videos, args.faces_per_video, args.scale,
                                         args.img_size, args.arch, args.batch_size)
    if table.empty:
        print("error: no video could be benchmarked", file=sys.stderr)
        return 1
    print(bench.format_table(table))
    if args.out is not None:
        io.write_csv(table, args.out)
        print(f"written: {args.out}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument said in one line like every other dflib error (its
    default prints the usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _count(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} is below the minimum {low}")
    return value


def _positive(text: str) -> int:
    """An argparse type: a count of at least 1 (frames, repeats, videos, sizes)."""
    return _count(text, 1)


def _non_negative(text: str) -> int:
    """An argparse type: a count of at least 0 (worker counts, 0: in this process)."""
    return _count(text, 0)


def _share(text: str) -> float:
    """An argparse type: a share in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:  # NaN too
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dflib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a profile's notebooks through papermill")
    run.add_argument("profile", help="params/<profile>.yaml")
    run.add_argument("--stages", nargs="+", metavar="STAGE",
                     help=f"subset of stages ({', '.join(s.name for s in config.STAGES)})")
    run.add_argument("--quiet", action="store_true", help="don't stream notebook output")
    run.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                     help="run the profile once per seed into <run>-s<seed>/ and write "
                          "<run>/tables/results_seeds.csv (mean and standard deviation)")
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check", help="validate a profile, its data folder and its splits")
    check.add_argument("profile")
    check.set_defaults(func=_cmd_check)

    synth = sub.add_parser("synth", help="write the embedded demo dataset")
    synth.add_argument("out_dir")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=_cmd_synth)

    pred = sub.add_parser("predict", help="score videos with a trained detector of a run",
                          description="Sample frames, extract faces and score each video with "
                          "one detector of a run; prints one JSON line per video or image. Exit status "
                          "1 when a video could not be read, 2 on bad arguments.")
    pred.add_argument("videos", nargs="+", metavar="INPUT",
                      help="a video, an image (.jpg, .png, ...; frame-level detectors), or a "
                      "folder of them (scored recursively, in sorted order)")
    pred.add_argument("--run", required=True, help="the run folder, e.g. outputs/demo")
    pred.add_argument("--method", help="detector name (default: the run's best validation "
                                       "video AUC)")
    pred.add_argument("--threshold", type=float,
                      help="fake above this (default: the method's threshold_val, chosen on "
                           "the run's validation split)")
    pred.add_argument("--frames-csv", type=Path, metavar="FILE",
                      help="also write per-frame scores (frame-level methods)")
    pred.set_defaults(func=_cmd_predict)

    bench = sub.add_parser("bench", help="benchmarks against a baseline measured in the same run")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    extract = bench_sub.add_parser("extract", help="decoding, the original study's MTCNN and "
                                   "dflib's extraction on the same first frames")
    steps = bench_sub.add_parser("steps", help="the share of each step of dflib's extraction "
                                 "(decoding, pyramid, networks, crops), every frame searched "
                                 "against the key-frame search")
    parallel = bench_sub.add_parser("parallel", help="run_extraction with 1, 2, ... Dask workers")
    for p in (extract, steps, parallel):
        p.add_argument("paths", nargs="+", metavar="VIDEO_OR_DIR",
                       help="a video or a folder of videos (one table row per argument)")
        p.add_argument("--frames", type=_positive, default=25,
                       help="first N frames of each video")
        p.add_argument("--device", default="auto", choices=DEVICES)
        p.add_argument("--out", type=Path, metavar="CSV", help="also write the table here")
        for flag, kind in (("--factor", float), ("--min-face-size", int),
                           ("--detect-max-side", int), ("--redetect-every", int)):
            p.add_argument(flag, type=kind, help="FaceExtractor setting (default: the "
                           "profile default, dflib/faces_fields.py)")
    extract.add_argument("--repeats", type=_positive, default=3,
                         help="turns of dflib serially and decoding ahead, taking turns over "
                              "all videos; the median counts")
    parallel.add_argument("--workers", type=_non_negative, nargs="+", default=[1, 2],
                          help="worker counts to time (0: in this process, without and with "
                               "the next video decoded ahead); the speed-up is against the first")
    parallel.add_argument("--repeats", type=_positive, default=3,
                          help="runs of each worker count, taking turns; the median counts")
    decode = bench_sub.add_parser("decode", help="dflib's OpenCV decoding against PyAV (frame "
                                  "threading, in order and seeking) on the same sampled frames")
    decode.add_argument("paths", nargs="+", metavar="VIDEO_OR_DIR",
                        help="a video or a folder of videos (one table row per argument and "
                             "decoder)")
    decode.add_argument("--frames", type=_positive, default=25,
                        help="frames sampled per video")
    decode.add_argument("--sampling", default="first",
                        choices=SAMPLING_STRATEGIES,
                        help="which frames, as the profile's faces.sampling picks them")
    decode.add_argument("--every-k", type=_positive, default=5,
                        help="step of --sampling every_k")
    decode.add_argument("--repeats", type=_positive, default=3,
                        help="turns of every decoder over every video; the median counts")
    decode.add_argument("--out", type=Path, metavar="CSV", help="also write the table here")
    memory = bench_sub.add_parser("train-memory", help="peak RSS of one training epoch at 1x "
                                  "and k x the faces, each in a fresh process")
    memory.add_argument("--videos", type=_positive, default=40,
                        help="videos of the 1x face store")
    memory.add_argument("--faces-per-video", type=_positive, default=25)
    memory.add_argument("--scale", type=_positive, default=4, help="k")
    memory.add_argument("--img-size", type=_positive, default=32)
    memory.add_argument("--arch", default="ef0")
    memory.add_argument("--batch-size", type=_positive, default=32)
    memory.add_argument("--out", type=Path, metavar="CSV", help="also write the table here")
    feed = bench_sub.add_parser("train-feed", help="samples/s of the training feeds (faces "
                                "with augmentation off and on, clips, sequences) against the "
                                "model's own training step, as a ratio")
    feed.add_argument("--run", type=Path, help="read this run's face store (default: a "
                      "generated store of random faces)")
    feed.add_argument("--videos", type=_positive, default=40,
                      help="videos of the generated store")
    feed.add_argument("--faces-per-video", type=_positive, default=25)
    feed.add_argument("--img-size", type=_positive, default=160,
                      help="faces of the generated store")
    feed.add_argument("--arch", default="xception", help="frame CNN whose step is timed")
    feed.add_argument("--batch-size", type=_positive, default=32)
    feed.add_argument("--workers", type=_non_negative, nargs="+", default=[1, 2],
                      help="feed threads (Keras PyDataset workers)")
    feed.add_argument("--steps", type=_positive, default=3,
                      help="timed training steps per model")
    feed.add_argument("--clip-len", type=_positive, default=16)
    feed.add_argument("--clip-size", type=_positive, default=112)
    feed.add_argument("--seq-len", type=_positive, default=25)
    feed.add_argument("--out", type=Path, metavar="CSV", help="also write the table here")
    footage = bench_sub.add_parser("footage", help="write 720p and small-face 1080p videos "
                                   "to benchmark on")
    footage.add_argument("out_dir")
    footage.add_argument("--frames", type=_positive, default=25)
    footage.add_argument("--face-scale", type=_share, default=0.2,
                         help="shrink of the 720p frames pasted into 1080p ones")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .notebooks import how_stopped, signal_of, stop_signals_interrupt

    args = build_parser().parse_args(argv)
    try:
        with stop_signals_interrupt():  # a closed terminal or SIGTERM unwinds as Ctrl-C does
            return args.func(args)
    except config.ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:  # `run` names its stage itself; every write is atomic
        print(f"{how_stopped(signal_of(exc))}: dflib {args.command} stopped; what it "
              "finished is kept", file=sys.stderr)
        return EXIT_SIGNAL + signal_of(exc)


if __name__ == "__main__":
    sys.exit(main())
