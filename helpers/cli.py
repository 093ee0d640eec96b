"""Command line: ``python -m helpers <command> ...``.

Commands are argparse subcommands; each module-level ``_add_<command>(subparsers)`` adds its
parser and sets ``func`` to a handler ``(args) -> exit code``. Only ``run`` exists so far;
``train``, ``evaluate`` and ``bench`` go next to it in :data:`COMMANDS`.

Exit codes: 0 success, 1 a notebook failed, 2 a usage or configuration error (nothing ran).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__


def _param(text: str):
    from .runner import parse_override

    try:
        return parse_override(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------
def _add_run(subparsers):
    p = subparsers.add_parser(
        "run",
        help="execute the numbered notebooks with papermill, parameters from a profile",
        description=(
            "Execute the numbered notebooks in notebooks/ in order with papermill (kernel python3,\n"
            "working directory notebooks/), parameters from params/PROFILE.yaml and -p overrides.\n"
            "Executed copies go to OUTPUT/notebooks/, figures to OUTPUT/figures/.\n"
            "Parameters named *_dir are paths; relative ones are taken from the current directory."
        ),
        epilog=(
            "examples:\n"
            "  python -m helpers run --profile quick --output runs/quick\n"
            "  python -m helpers run --profile smoke --output runs/smoke --notebooks 01 02\n"
            "  python -m helpers run --profile full --output runs/full "
            "-p data_dir=../shared/data/cifar-10-batches-py"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--profile", required=True, metavar="NAME",
                   help="parameter profile params/NAME.yaml (quick, smoke, full, ...)")
    p.add_argument("--output", metavar="DIR", type=Path,
                   help="folder for executed notebooks and figures (default: runs/NAME)")
    p.add_argument("--notebooks", nargs="+", metavar="NB",
                   help="notebooks to run, by number (01) or name (default: all, in order)")
    p.add_argument("-p", "--param", dest="params", action="append", type=_param, default=[], metavar="NAME=VALUE",
                   help="override a parameter in every notebook that declares it (YAML values: 5, 0.5, [0.3, 0.7])")
    p.add_argument("--dry-run", action="store_true", help="check the profile and print the plan; run nothing")
    p.add_argument("--no-progress", action="store_true", help="no papermill progress bar, even on a terminal")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args) -> int:
    from . import runner

    try:
        steps = runner.plan_run(args.profile, args.notebooks, dict(args.params))
    except runner.RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output = args.output or Path("runs") / args.profile
    spec = runner.load_profile(args.profile)
    print(f"profile {args.profile}: {spec['description']}".rstrip(": "))
    print(f"{len(steps)} notebook(s) -> {output}/notebooks, figures -> {output}/figures")
    print(runner.format_plan(steps))
    if args.dry_run:
        return 0
    start = time.perf_counter()
    progress = False if args.no_progress else None
    try:
        runner.run_steps(steps, output, progress_bar=progress)
    except runner.NotebookFailed as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    print(f"done: {len(steps)} notebook(s) in {time.perf_counter() - start:.1f} s")
    return 0


# --------------------------------------------------------------------------------------------
COMMANDS = (_add_run,)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Masked image modeling with Vision Transformers: run the course notebooks headless.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
