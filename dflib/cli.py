"""The ``dflib`` command line: run, check, synth."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import config

EXIT_BAD_INPUT = 2


def _cmd_check(args: argparse.Namespace) -> int:
    profile = config.load(args.profile)
    stages = ", ".join(s.name for s in config.STAGES)
    print(f"{args.profile}: ok (run folder {profile.run.root}; stages {stages})")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from . import runner

    profile = config.load(args.profile)
    runner.select_stages(args.stages)  # refuse unknown stage names before any work
    try:
        root = runner.run_profile(profile, args.stages, log_output=not args.quiet)
    except runner.StageFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"[dflib] run complete: {root}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from . import synth

    manifest = synth.generate(args.out_dir, seed=args.seed)
    print(f"{args.out_dir}: {len(manifest)} videos "
          f"({int((manifest['label'] == 0).sum())} real, {int(manifest['label'].sum())} fake)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dflib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a profile's notebooks through papermill")
    run.add_argument("profile", help="params/<profile>.yaml")
    run.add_argument("--stages", nargs="+", metavar="STAGE",
                     help=f"subset of stages ({', '.join(s.name for s in config.STAGES)})")
    run.add_argument("--quiet", action="store_true", help="don't stream notebook output")
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check", help="validate a profile and its data folder only")
    check.add_argument("profile")
    check.set_defaults(func=_cmd_check)

    synth = sub.add_parser("synth", help="write the embedded demo dataset")
    synth.add_argument("out_dir")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=_cmd_synth)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except config.ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
