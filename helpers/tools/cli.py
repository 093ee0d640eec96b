"""Command line: ``python -m helpers <command> ...`` (docs/cli.md describes every command).

Exit codes: 0 success, 1 a notebook failed, 2 a usage or configuration error, 130 interrupted.
Handlers import Keras when they run, so that ``--help`` and usage errors answer without it.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from pathlib import Path

from .. import __version__, _checks
from .._checks import PRECISIONS, SettingError, check_hidden
from .._io import writable_dir
from ..checkpoints import NAMES as CHECKPOINT_NAMES
from ..data import DATASETS
from ..masking import SCORES, STRATEGIES, n_masked
from ..recipes import BUILDERS, PREDICTORS, RECIPES, min_hidden_bound
from . import quality as _quality
from ._startup import quiet_tensorflow
from .evaluation import SCORE_CHOICES
from .experiments import MODEL_SIZES, PLANS, SweepConfig
from .grading import GRADED_STRATEGIES


class _UsageError(Exception):
    """A bad command-line value found by a handler: printed as ``error: ...``, exit code 2."""


def _checked(check, convert=float, *args, form="{0}: {1}"):
    """An argparse ``type``: ``check(convert(text))``; a SettingError is shown as ``form``."""

    def parse(text: str):
        try:
            return check(convert(text), "value", *args)
        except SettingError as exc:
            raise argparse.ArgumentTypeError(form.format(text, exc.problem)) from None

    parse.__name__ = convert.__name__  # argparse's "invalid int value: 'x'"
    return parse


def _override(text: str, _name):
    from .runner import parse_override  # lazy: pulls in papermill

    return parse_override(text)


_ratio = _checked(_checks.check_ratio)
_positive = _checked(_checks.check_positive_number)
_fraction = _checked(_checks.check_fraction)
_nonnegative = _checked(_checks.check_nonnegative_number)
_count = _checked(_checks.check_positive_int, int)  # >= 1
_seed = _checked(_checks.check_positive_int, int, 0)  # >= 0
_patch_size = _checked(lambda p, _name: _checks.check_patch_size(p, (32, 32)), int)
# an output folder, checked writable before any work; -p NAME=VALUE: (name, value text)
_output_dir = _checked(lambda path, _name: writable_dir(path), str, form="{0!r} {1}")
_param = _checked(_override, str, form="{0!r}: {1}")


def _existing_dir(path) -> None:
    if not Path(path).expanduser().is_dir():
        problem = "no such folder (a CIFAR-10 python-batch folder is expected)"
        raise SettingError("data_dir", path, problem)


# -------------------- Every option, declared once: flags -> add_argument keywords ----------
def _o(help, type=None, default=None, metavar=None, **kwargs) -> dict:
    """``add_argument`` keywords, the help first and the unset ones left out."""
    kwargs |= {"help": help, "type": type, "default": default, "metavar": metavar}
    return {k: v for k, v in kwargs.items() if v is not None}


_D = "(default: %(default)s)"
_ON = {"action": "store_true"}
_LOSSES, _WHERE, _RANGE, _NV = ("mse", "psnr"), ("masked", "all"), ("LOW", "HIGH"), "NAME=VALUE"
_OPTIONS = {
    "--dataset": _o(f"dataset {_D}", default="sample", choices=DATASETS),
    "--data-dir": _o("CIFAR-10 python-batch folder (default: the Keras cache)", metavar="DIR"),
    "--grayscale": _o("one-channel images (skimage.color.rgb2gray)", **_ON),
    "--n-train": _o("seeded subset of N training images (default: 0, all)", _seed, 0, "N"),
    "--n-test": _o(f"the first N test images, 0: all {_D}", _seed, 0, "N"),
    "--val-fraction": _o(f"share of the images kept for validation {_D}", _fraction, 0.1, "F"),
    "--seed": _o(f"seed of the data subset, weights and training masks {_D}", _seed, 0, "S"),
    "--strategy": _o("masking strategy", choices=STRATEGIES, required=True),
    "--strategies": _o("masking strategies", None, None, "S", nargs="+", choices=STRATEGIES),
    "--ratio": _o(f"masking ratio in (0, 1) {_D}", _ratio, metavar="R"),
    "--ratio-range": _o("a ratio drawn in [LOW, HIGH] per batch", _ratio, None, _RANGE, nargs=2),
    "--ratios": _o("masking ratios (default: 0.3 0.5 0.7)", _ratio, nargs="+", metavar="R"),
    "--eval-ratios": _o("ratios scored (default: the training ones)", _ratio, None, "R", nargs="+"),
    "--score": _o("importance strategy's patch score (default: variance)", choices=SCORE_CHOICES),
    "--patch-size": _o(f"patch side in pixels {_D}", _patch_size, 4, "P"),
    "--mask-seed": _o(f"seed of the masks {_D}", _seed, 0, "S"),
    "--model": _o("a saved .keras model", metavar="PATH", required=True),
    "--recipe": _o(f"model and training settings (helpers.recipes) {_D}", choices=RECIPES),
    "--predictors": _o("predictors (default: all)", nargs="+", choices=PREDICTORS, metavar="P"),
    "--plan": _o(f"one model per predictor, per strategy or per cell {_D}", choices=PLANS),
    "--model-size": _o(f"ViT tokens of 64, 2 blocks, or notebook 03's {_D}", choices=MODEL_SIZES),
    "--epochs": _o(f"training epochs {_D}", _count, metavar="E"),
    "--images": _o("training images to see (rounded up to whole epochs)", _count, metavar="N"),
    "--minutes": _o("wall-clock minutes; the learning rate decays over them", _positive, None, "M"),
    "--minutes-per-model": _o("training time per model in minutes", _positive, metavar="M"),
    "--batch-size": _o(f"batch size {_D}", _count, 64, "B"),
    "--lr": _o("Adam learning rate (default: the recipe's)", _positive, metavar="LR"),
    "--lr-schedule": _o("plateau or cosine (default: the recipe's)", choices=("plateau", "cosine")),
    "--augment": _o("random flips (default: the recipe's)", action=argparse.BooleanOptionalAction),
    "--loss-on": _o("loss over the masked patches or all (default: the recipe's)", choices=_WHERE),
    "--loss": _o("psnr: minus each image's PSNR (default: the recipe's)", choices=_LOSSES),
    "--early-stopping": _o("stop when the validation loss stalls", **_ON),
    "--patience": _o(f"epochs without improvement before stopping {_D}", _count, 10, "E"),
    "--precision": _o(f"dtype policy; mixed_float16 needs a GPU {_D}", choices=PRECISIONS),
    "--devices": _o(f"train data parallel on N devices {_D}", _count, 1, "N"),
    "--workers": _o(f"threads that assemble the batches {_D}", _count, 1, "N"),
    "--probe-epochs": _o(f"> 0: the linear probe of each encoder, E epochs {_D}", _seed, 0, "E"),
    # model size: an option of the --model kinds whose class takes it (_takes)
    "--embed-dim": _o("token width", _count, metavar="D"),
    "--depth": _o("Transformer blocks (of the encoder)", _count, metavar="N"),
    "--num-heads": _o("attention heads", _count, metavar="H"),
    "--mlp-dim": _o("hidden width of the MLPs", _count, metavar="D"),
    "--pos-init": _o("start of the position embeddings", choices=("random", "sincos")),
    "--fill": _o("hidden patch: mask token, or harmonic fill + it", choices=("harmonic", "token")),
    "--decoder-dim": _o("decoder token width (default 64)", _count, metavar="D"),
    "--decoder-depth": _o("decoder blocks (default 1)", _count, metavar="N"),
    "--decoder-num-heads": _o("decoder attention heads (default 4)", _count, metavar="H"),
    "--decoder-mlp-dim": _o("decoder MLP width (default 128)", _count, metavar="D"),
    "--min-mask-ratio": _o("fewest hidden patches (default: lowest ratio)", _ratio, metavar="R"),
    "--filters": _o("filters per stage, e.g. 32 64 128", _count, nargs="+", metavar="F"),
    "--latent-dim": _o("latent values per token or position", _count, metavar="D"),
    "--latent-weight": _o("aae: prior's adversarial loss (default 1e-4)", _nonnegative, None, "W"),
    "--image-weight": _o("aae: image discriminator's loss (default 0)", _nonnegative, None, "W"),
    "--decoder-filters": _o("filters per doubling, e.g. 64 32", _count, nargs="+", metavar="F"),
    "--dropout": _o("dropout rate in [0, 1)", _fraction, metavar="P"),
    "--preset": _o("keras-hub preset, hf://... or a local folder", metavar="PRESET_OR_FOLDER"),
    "--fine-tune": _o("head: the backbone frozen (default); all", choices=("head", "all")),
    "--backbone-lr-scale": _o("the backbone's share of --lr (default 0.1)", _positive, metavar="S"),
    "--head-dim": _o("width of the decoding head (default 64)", _count, metavar="D"),
    "--output": _o("output folder", _output_dir, metavar="DIR", required=True),
    "--run-name": _o("run folder name (default: MODEL-STRATEGY-RATIO-seedS)", metavar="NAME"),
    "--run": _o("a run folder of train", metavar="DIR", required=True),
    "--quiet": _o("no progress bar (the default when not on a terminal)", **_ON),
    "--profile": _o("parameter profile params/NAME.yaml", metavar="NAME", required=True),
    "--notebooks": _o("by number (01) or name (default: all, in order)", nargs="+", metavar="NB"),
    "--param": _o("override a parameter (YAML)", _param, [], _NV, action="append", dest="params"),
    "--dry-run": _o("check the profile and print the plan; run nothing", **_ON),
    "--no-progress": _o("no papermill progress bar, even on a terminal", **_ON),
    "--submissions": _o("one folder per student", metavar="DIR", required=True),
    "--timeout": _o(f"time limit of each model's process {_D}", _positive, metavar="SECONDS"),
    "--memory-mb": _o(f"memory limit of each process {_D}", _positive, metavar="MB"),
    "--max-model-mb": _o(f"largest model file accepted {_D}", _positive, 200.0, "MB"),
    "--assignment": _o(f"assignment name {_D}", default="mim", metavar="NAME"),
    "--name": _o("the checkpoint's name", choices=CHECKPOINT_NAMES, required=True),
    "--command": _o("the train command that made the run", required=True),
    "--folder": _o("where to write (default: checkpoints/)", metavar="DIR"),
    "--quick": _o("much smaller sizes and tiny models (seconds, for tests)", **_ON),
}
_SIZE = "--embed-dim --depth --num-heads --mlp-dim --pos-init --fill --decoder-dim --decoder-depth"
_SIZE += " --decoder-num-heads --decoder-mlp-dim --min-mask-ratio --filters --latent-dim"
_SIZE += " --latent-weight --image-weight --decoder-filters --dropout"
_BACKBONE = "--preset --fine-tune --backbone-lr-scale --head-dim"
_DATA = "--dataset --data-dir --grayscale"
_CIFAR = {"required": True, "help": "CIFAR-10 python-batch folder (its test_batch: held out)"}
_MAYBE = {"required": False, "help": "output folder (default: in runs/)"}


def _add(p, flags: str, groups=(), **changes):
    """Add the options ``flags`` (:data:`_OPTIONS` keys; ``--n-test=200``: a default) and ``groups``
    ((title, flags); title "": exclusive) to ``p``; ``changes`` by name: defaults or keywords."""
    for flag, _, default in (f.partition("=") for f in flags.split()):
        change = changes.get(flag[2:].replace("-", "_"), {})
        kwargs = {**_OPTIONS[flag], **(change if isinstance(change, dict) else {})}
        kwargs |= {"default": default} if default else {}
        p.add_argument(*(("-p", flag) if flag == "--param" else (flag,)), **kwargs)
    for title, names in groups:
        group = p.add_argument_group(title) if title else p.add_mutually_exclusive_group()
        _add(group, names, **changes)
    p.set_defaults(**{name: v for name, v in changes.items() if not isinstance(v, dict)})


_ABOUT = "Masked image modeling: run the notebooks headless, train, evaluate, probe, grade, bench."
COMMANDS: list = []  # (name, handler, options, changes) in --help order; handler: exit code or None
_GROUPS = {"bench": "benchmarks: speed (masks, metrics, training throughput) and quality"}


def _command(name: str, options: str = "", groups=(), **changes):
    """Declare the decorated function (docstring: the help) the handler of command ``name``."""
    entry = {"groups": groups, **changes}

    def declare(func):
        COMMANDS.append((name, func, options, entry))
        return func

    return declare


def _pick(args, names: str) -> dict:
    return {name: getattr(args, name) for name in names.split()}


@_command("run", "--profile --output --notebooks --param --dry-run --no-progress", output=_MAYBE)
def _cmd_run(args):
    """execute the numbered notebooks with papermill, parameters from a profile"""
    from . import runner

    try:
        steps = runner.plan_run(args.profile, args.notebooks, dict(args.params))
    except runner.RunnerError as exc:
        raise _UsageError(str(exc)) from None
    output = args.output or Path("runs") / args.profile
    about = runner.load_profile(args.profile)["description"]
    print(f"profile {args.profile}: {about}".rstrip(": "))
    print(f"{len(steps)} notebook(s) -> {output}/notebooks, figures -> {output}/figures, ", end="")
    print(f"results -> {output}/results\n{runner.format_plan(steps)}")
    if args.dry_run:
        return 0
    start, progress = time.perf_counter(), False if args.no_progress else None
    try:
        runner.run_steps(steps, output, progress_bar=progress, profile=args.profile)
    except runner.NotebookFailed as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    print(f"done: {len(steps)} notebook(s) in {time.perf_counter() - start:.1f} s")


# the class of each --model (vit_biharmonic: the vit's), whose parameters are its size options
_CLASSES = dict(vit="MaskTokenViT", mae="MaeViT", cnn="CnnAutoencoder", vit_cnn="VitCnnAutoencoder")
_CLASSES |= dict(aae="AdversarialAutoencoder", pretrained_vit="PretrainedViT")
_NOT_OPTIONS = {"pretrained_vit": {"fill"}}  # its fill (grey or harmonic) is not --fill's


def _takes(model: str) -> set[str]:
    """The size options (by name) of ``--model model``: the parameters of its class."""
    from .. import models, pretrained

    cls = {**vars(pretrained), **vars(models)}[_CLASSES.get(model, "MaskTokenViT")]
    return set(inspect.signature(cls.__init__).parameters) - _NOT_OPTIONS.get(model, set())


def _model_kwargs(args, low: float) -> dict:
    """Builder keyword arguments from the size options; options of another model kind are errors."""
    kwargs = {"image_shape": (32, 32, 1 if args.grayscale else 3), "patch_size": args.patch_size}
    kwargs |= {"seed": args.seed, "mixed_precision": args.precision}
    options = _pick(args, f"{_SIZE} {_BACKBONE}".replace("--", "").replace("-", "_"))
    for name, value in ((n, v) for n, v in options.items() if v is not None):
        if name not in _takes(args.model):
            owners = "/".join(m for m in _CLASSES if name in _takes(m))
            flag = f"--{name.replace('_', '-')} is an option of --model {owners}, not of"
            raise _UsageError(f"{flag} --model {args.model}")
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    if min_hidden_bound(args.model):
        mmr, n = kwargs.setdefault("min_mask_ratio", low), (32 // args.patch_size) ** 2
        words = {"model": "the MAE", "allowed": f"--min-mask-ratio <= {low}, the lowest ratio"}
        check_hidden(n_masked(low, n), n_masked(mmr, n), n, "min_mask_ratio", mmr, **words)
    return kwargs


@_command(
    "train",
    f"--model --strategy --score {_DATA} --n-train --val-fraction --patch-size --batch-size --seed"
    " --output --run-name --recipe=tuned --lr --lr-schedule --augment --loss-on --loss"
    " --early-stopping --patience --precision=float32 --devices --workers --quiet",
    [
        ("", "--ratio --ratio-range"),
        ("budget (one; default: 10 epochs)", "--epochs --images --minutes"),
        ("model size (of the --model kinds whose class takes it)", _SIZE),
        ("pretrained backbone (--model pretrained_vit)", _BACKBONE),
    ],
    ratio=0.5,
    model={"choices": BUILDERS, "metavar": None, "help": "the model to build"},
    strategy={"nargs": "+", "required": False, "default": ["random"]},
    score={"choices": SCORES, "default": "variance"},
)
def _cmd_train(args):
    """train one model to reconstruct masked patches

    example: python -m helpers train --model mae --ratio-range 0.3 0.7 --minutes 30 --output m"""
    from ..data import DatasetError, load_dataset
    from ..devices import check_devices
    from ..models import build_model
    from ..training import BACKUP, BEST, FINAL, HISTORY, read_history, train

    ratio = low = args.ratio
    if args.ratio_range:
        ratio, low = tuple(args.ratio_range), args.ratio_range[0]
        if ratio[0] > ratio[1]:
            raise _UsageError(f"--ratio-range {ratio[0]} {ratio[1]}: LOW must be <= HIGH")
    budgets = [f for f in ("--epochs", "--images", "--minutes") if getattr(args, f[2:]) is not None]
    if len(budgets) > 1 and budgets != ["--epochs", "--minutes"]:
        one = "give one budget (--minutes may come with --epochs as a cap)"
        raise _UsageError(f"{' and '.join(budgets)}: {one}")
    args.epochs = args.epochs if budgets else 10
    if args.dataset == "cifar10" and args.data_dir is not None:
        _existing_dir(args.data_dir)
    shown = [f"{r:.2f}" for r in (ratio if args.ratio_range else [ratio])]
    name = f"{args.model}-{'+'.join(args.strategy)}-{'to'.join(shown)}-seed{args.seed}"
    args.run_name = args.run_name or name
    if os.sep in args.run_name or args.run_name in ("", ".", ".."):
        raise SettingError("run_name", args.run_name, "must be a plain folder name")
    check_devices(args.devices, args.batch_size)
    kwargs = _model_kwargs(args, low)
    try:
        names, n_train = "data_dir val_fraction seed grayscale", args.n_train or None
        data = load_dataset(args.dataset, n_train=n_train, **_pick(args, names))
    except (DatasetError, ValueError) as exc:
        raise _UsageError(f"--dataset {args.dataset}: {exc}") from None
    try:
        model = build_model(args.model, recipe=args.recipe, **kwargs)
    except SettingError:  # its option is named: --precision
        raise
    except (ValueError, TypeError) as exc:
        raise _UsageError(f"--model {args.model}: {exc}") from None
    folder = args.output / args.run_name
    print(f"{data.summary()}\n{args.model}: {model.count_params():,} parameters; ", end="")
    print(f"{'/'.join(args.strategy)} masks, ratio {'-'.join(shown)}; run folder {folder}")
    if (folder / BACKUP).exists() and (folder / HISTORY).exists():
        done, of = len(read_history(folder / HISTORY)), f" of {args.epochs}" * (not args.minutes)
        print(f"resuming the interrupted run in {folder} ({done}{of} epochs in history.csv)")
    elif (folder / FINAL).exists():
        print(f"note: {folder} holds a completed run; training again from epoch 0 replaces it")
    options = "epochs images minutes batch_size seed recipe lr lr_schedule early_stopping patience"
    options = _pick(args, f"{options} augment loss_on loss devices workers")
    strategy = args.strategy[0] if len(args.strategy) == 1 else list(args.strategy)
    options |= {"strategy": strategy, "ratio": ratio, "run_dir": folder, "score_fn": args.score}
    try:
        result = train(model, data, verbose=int(sys.stdout.isatty() and not args.quiet), **options)
    except ValueError as exc:  # settings only the training data can check (an MAE's ratio)
        raise _UsageError(str(exc)) from None
    history = result["history"]
    losses = ", ".join(f"{k} {history[k][-1]:.5f}" for k in ("loss", "val_loss") if history.get(k))
    if history.get("val_loss"):
        losses += f", best val_loss {min(history['val_loss']):.5f}"
    print(f"trained {result['epochs']} epoch(s), {result['images_seen']:,} images seen ", end="")
    print(f"({result['seconds']:.1f} s this call, compilation included): {losses}")
    print(f"best model:  {folder / BEST}\nfinal model: {folder / FINAL}")
    print(f"history:     {folder / HISTORY}")


@_command("checkpoint", "--run --name --data-dir --command --folder", data_dir=_CIFAR)
def _cmd_checkpoint(args):
    """publish a trained run as a course checkpoint (checkpoints/NAME.keras + NAME.json)"""
    from ..checkpoints import provenance
    from .publishing import heldout_table, publish

    target = publish(args.run, args.name, args.data_dir, args.command, folder=args.folder)
    record = provenance(args.name, target.parent)
    print(f"{target} ({record['epochs']} epochs, {record['images_seen']:,} images seen, ", end="")
    print(f"{record['minutes']} min); held-out masked-region PSNR (dB) at 50 %:")
    for row in heldout_table(record):
        cells = "".join(f"{row[s]:>9.2f}" for s in row if s != "predictor")
        print(f"  {row['predictor']:<20}{cells}")


@_command(
    "evaluate",
    "--model --dataset=cifar10 --data-dir --grayscale --strategy --ratio --output --n-test"
    " --mask-seed --patch-size --score --batch-size=256",
    model={"metavar": "PATH|biharmonic|mean_colour", "help": "a .keras model, or not learned"},
    ratio={"required": True},
)
def _cmd_evaluate(args):
    """score a saved model, biharmonic or the mean-colour guess on a test set with fixed masks

    example: python -m helpers evaluate --model biharmonic --strategy rows --ratio 0.3 --output e"""
    from . import evaluation

    if args.score is not None and args.strategy != "importance":
        note = f"note: --score {args.score} is ignored: it applies to --strategy importance only"
        print(note, file=sys.stderr)
    names = "dataset data_dir strategy ratio n_test mask_seed patch_size batch_size grayscale"
    score = args.score if args.strategy == "importance" else None
    results = evaluation.run_evaluation(args.model, score=score, **_pick(args, names))
    json_path, csv_path = evaluation.write_results(args.output, results)
    print(evaluation.format_table(results))
    print(f"\nwritten: {json_path}, {csv_path} ({results['seconds']:.1f} s)")


@_command(
    "probe",
    "--model --dataset=cifar10 --data-dir --grayscale --output --n-train --n-test --epochs=100"
    " --lr=1e-2 --seed",
)
def _cmd_probe(args):
    """linear probe of a trained model's encoder: accuracy, macro-F1, Cohen's kappa"""
    from . import probe

    sizes = {"n_train": args.n_train or None, "n_test": args.n_test or None}
    names = "dataset data_dir epochs lr seed grayscale"
    result = probe.run_probe(args.model, **sizes, **_pick(args, names))
    paths = probe.write_probe(args.output, result)
    print(probe.format_probe(result))
    print("written: " + ", ".join(str(p) for p in paths))


_S = SweepConfig()  # the sweep's defaults


@_command(
    "sweep",
    f"--run {_DATA} --n-train --n-test=200 --strategies --ratios --predictors --plan={_S.plan}"
    f" --epochs={_S.epochs} --batch-size={_S.batch_size} --model-size=small"
    f" --recipe={_S.recipe} --seed --probe-epochs",
    run={"metavar": "NAME|DIR", "help": "the run folder; a plain name: one of results/"},
    **{k: list(getattr(_S, k)) for k in ("strategies", "ratios", "predictors")},
)
def _cmd_sweep(args):
    """the strategy x ratio x predictor sweep of notebook 05, headless, with the linear probe"""
    from ..data import DatasetError, load_dataset
    from . import experiments, report

    run = experiments.Run(args.run)
    writable_dir(run.path, "run")  # before the data is read or anything is trained
    names = "strategies ratios predictors plan epochs batch_size seed recipe probe_epochs"
    sizes = experiments.model_sizes(args.model_size)
    config = experiments.SweepConfig(model_kwargs=sizes, **_pick(args, names))
    sizes = {"n_train": args.n_train or None, "n_test": args.n_test or None}
    try:
        ds = load_dataset(args.dataset, **_pick(args, "data_dir seed grayscale"), **sizes)
    except DatasetError as exc:
        raise SettingError("data_dir", args.data_dir, str(exc)) from None
    extra = {"profile": "python -m helpers sweep", "model_size": args.model_size}
    rows = experiments.run_sweep(ds, config, run, extra_provenance=extra)
    print("masked-region PSNR (dB), mean over the test images; best per row in **bold**")
    print(report.results_table(rows, "psnr_masked_mean"))
    for predictor in (p for p in config.predictors if report.probe_cells(rows, p)):
        name = report.NAMES.get(predictor, predictor)
        print(f"\nlinear probe of the {name} encoders: accuracy (masked-region PSNR of the model)")
        print(report.probe_table(rows, predictor))
        n_test = run.provenance()["probe"]["n_test"]
        for sentence in report.probe_findings(rows, run.probe_rows(), predictor, n_test=n_test):
            print(f"- {sentence}")
    print(f"\nwritten: {run.path}")


@_command(
    "grade",
    "--submissions --data-dir --output --ratio=0.5 --strategies --n-test --mask-seed --timeout=600"
    " --memory-mb=4096 --max-model-mb",
    data_dir=_CIFAR,
    strategies={"choices": GRADED_STRATEGIES, "default": list(GRADED_STRATEGIES)},
    mask_seed={"default": None, "help": "seed of the masks (default: a fresh secret one)"},
)
def _cmd_grade(args):
    """score every student's submitted model on a hidden test set (grades.csv, leaderboard.md)"""
    from .grading import grade

    names = "ratio strategies n_test mask_seed timeout memory_mb max_model_mb"
    result = grade(args.submissions, args.data_dir, args.output, **_pick(args, names))
    print(result["paths"][1].read_text())  # leaderboard.md
    print("written: " + ", ".join(str(p) for p in result["paths"]))


@_command(
    "course",
    "--output --assignment --timeout=1800 --memory-mb=16384",
    timeout={"type": _count, "help": f"longest a notebook cell may run {_D}"},
)
def _cmd_course(args):
    """an nbgrader course folder with the notebooks' exercises"""
    from .grading import make_course

    folder = make_course(args.output, args.assignment, **_pick(args, "timeout memory_mb"))
    print(f"course folder: {folder}")
    print(f"next: cd {folder} && nbgrader generate_assignment {args.assignment}")


def _bench_start(name: str) -> float:
    import keras

    print(f"{name}: keras {keras.__version__}, backend {keras.backend.backend()}, ", end="")
    print(f"{os.cpu_count()} CPU(s)", flush=True)
    return time.perf_counter()


@_command("bench speed", "--quick")
def _cmd_bench_speed(args):
    """mask generation, metrics vs skimage, ViT vs MAE training throughput"""
    from . import bench

    start = _bench_start(f"bench speed{' --quick' if args.quick else ''}")
    bench.bench_speed(args.quick, lambda t, r: print(f"\n{t}\n{bench.format_rows(r)}", flush=True))
    print(f"\ndone in {time.perf_counter() - start:.1f} s")


@_command(
    "bench quality",
    "--data-dir --minutes-per-model --output --plan=mixed --predictors --recipe=long --grayscale"
    " --latent-weight --image-weight --loss --seed --eval-ratios",
    [("", "--ratio-range --ratio")],
    ratio={"help": "one training ratio instead (default: a range, 0.3 0.7)"},
    data_dir=_CIFAR,
    output=_MAYBE,
    plan={"choices": _quality.QUALITY_PLANS},
)
def _cmd_bench_quality(args):
    """reconstruction quality of each predictor for a fixed training time (CIFAR-10)"""
    _existing_dir(args.data_dir)
    kwargs = _pick(args, "data_dir plan recipe grayscale loss")
    aae = {k: v for k, v in _pick(args, "latent_weight image_weight").items() if v is not None}
    if aae and args.predictors and "aae" not in args.predictors:
        names = " / ".join(f"--{k.replace('_', '-')}" for k in aae)
        raise _UsageError(f"{names}: options of the aae predictor, which --predictors omits")
    optional = {"model_kwargs": {"aae": aae} if aae else None, "seed": args.seed or None}
    optional |= _pick(args, "minutes_per_model output")
    for name in ("predictors", "eval_ratios", "ratio_range"):
        optional[name] = tuple(getattr(args, name)) if getattr(args, name) else None
    optional["ratio"] = optional.pop("ratio_range") or args.ratio
    kwargs |= {k: v for k, v in optional.items() if v is not None}
    start = _bench_start("bench quality")
    rows = _quality.bench_quality(**kwargs)
    print(_quality.format_quality(rows))
    print(f"\nNumPy float32 2048² matmul at the start: {rows[0]['matmul_gflops']:.0f} GFLOP/s")
    print(f"\ndone in {(time.perf_counter() - start) / 60:.1f} min")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=_ABOUT)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = {"": parser.add_subparsers(dest="command", metavar="COMMAND", required=True)}
    for name, func, options, changes in COMMANDS:
        group, _, leaf = name.rpartition(" ")
        if group and group not in subparsers:  # bench: the parent of its commands
            g = subparsers[""].add_parser(group, help=_GROUPS[group], description=_GROUPS[group])
            subparsers[group] = g.add_subparsers(dest=f"{group}_command", metavar="BENCH")
            subparsers[group].required = True
        doc = inspect.getdoc(func)
        p = subparsers[group].add_parser(leaf, help=doc.split("\n")[0], description=doc)
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        _add(p, options, func=func, **changes)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()  # every command imports Keras; --help and usage errors have exited before
    try:
        return args.func(args) or 0
    except (_UsageError, SettingError) as exc:  # SettingError: found by the package's checks
        print(f"error: {getattr(exc, 'cli_message', exc.__str__)()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
