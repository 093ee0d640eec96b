"""Command line: ``python -m helpers <command> ...``.

Commands are argparse subcommands; each module-level ``_add_<command>(subparsers)`` adds its
parser and sets ``func`` to a handler ``(args) -> exit code``; :data:`COMMANDS` lists them:
``run`` (the notebooks), ``train`` (one model), ``evaluate`` (one predictor on a test set),
``probe`` (the linear probe of an encoder), ``sweep`` (notebook 05's sweep, headless), ``grade``,
``course`` and ``bench`` (``speed`` and ``quality`` benchmarks).

Exit codes: 0 success, 1 a notebook failed, 2 a usage or configuration error (nothing ran; the
message names the option, the value and what is allowed), 130 interrupted (``train`` resumes when
run again).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from . import __version__
from . import quality as _quality
from ._checks import (
    PRECISIONS,
    SettingError,
    check_fraction,
    check_nonnegative_number,
    check_patch_size,
    check_positive_int,
    check_positive_number,
    check_ratio,
)
from ._io import writable_dir
from .recipes import BUILDERS, PREDICTORS, RECIPES


def _param(text: str):
    from .runner import parse_override

    try:
        return parse_override(text)
    except SettingError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc.problem}") from None


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------
# long only because it declares one option per argparse call: no logic to split
def _add_run(subparsers):
    p = subparsers.add_parser(
        "run",
        help="execute the numbered notebooks with papermill, parameters from a profile",
        description=(
            "Execute the numbered notebooks in notebooks/ in order with papermill (kernel "
            "python3,\n"
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
    p.add_argument(
        "--profile",
        required=True,
        metavar="NAME",
        help="parameter profile params/NAME.yaml (quick, smoke, full, ...)",
    )
    p.add_argument(
        "--output",
        metavar="DIR",
        type=Path,
        help="folder for executed notebooks and figures (default: runs/NAME)",
    )
    p.add_argument(
        "--notebooks",
        nargs="+",
        metavar="NB",
        help="notebooks to run, by number (01) or name (default: all, in order)",
    )
    p.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        type=_param,
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter in every notebook that declares it (YAML values: 5, 0.5, [0.3, "
        "0.7])",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="check the profile and print the plan; run nothing"
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no papermill progress bar, even on a terminal"
    )
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
    print(
        f"{len(steps)} notebook(s) -> {output}/notebooks, figures -> {output}/figures, results -> "
        f"{output}/results"
    )
    print(runner.format_plan(steps))
    if args.dry_run:
        return 0
    start = time.perf_counter()
    progress = False if args.no_progress else None
    try:
        runner.run_steps(steps, output, progress_bar=progress, profile=args.profile)
    except runner.NotebookFailed as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    print(f"done: {len(steps)} notebook(s) in {time.perf_counter() - start:.1f} s")
    return 0


class _UsageError(Exception):
    """A bad command-line value found by a handler: printed as ``error: ...``, exit code 2."""


def _output_dir(value: str) -> Path:
    """argparse ``type`` of an output folder: checked writable before any work."""
    try:
        return writable_dir(value)
    except SettingError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} {exc.problem}") from None


# TensorFlow's start-up lines that TF_CPP_MIN_LOG_LEVEL does not hide (absl writes them before its
# log level is read) or that only level 3 would hide together with real errors: the CUDA probes of a
# machine without a GPU, the CPU-instruction notice, the oneDNN notices (also the one TensorFlow
# 2.21 logs at error level when its first boolean op falls back to Eigen, on AVX-512 CPUs too).
_TF_STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub\.cc|Could not find cuda drivers"
    r"|failed call to cuInit|cpu_feature_guard|This TensorFlow binary is optimized"
    r"|rebuild TensorFlow with the appropriate compiler flags|oneDNN custom "
    r"operations|TF_ENABLE_ONEDNN_OPTS|oneDNN supports DT_BOOL only"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
)


def _quiet_tensorflow():
    """Import Keras (and start TensorFlow's devices) without TensorFlow's C++ start-up lines on
    stderr.

    Sets TF_CPP_MIN_LOG_LEVEL=2 unless it is set; while Keras is imported, stderr (file descriptor
    2,
    where the C++ code writes) goes to a temporary file, and afterwards every line of it is written
    to stderr except the start-up notices in :data:`_TF_STARTUP_NOISE`, so real errors still show.
    With TF_CPP_MIN_LOG_LEVEL 0 or 1 nothing is filtered. TF_ENABLE_ONEDNN_OPTS is left alone.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"].strip() in ("0", "1"):
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr to filter
        return
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.config.list_physical_devices()  # the CUDA probe happens here, not at import
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            lines = log.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _TF_STARTUP_NOISE.search(line)))
            sys.stderr.flush()


def _checked(check, convert=float, *args):
    """An argparse ``type``: ``convert`` the text, then ``check`` it (:mod:`helpers._checks`), so a
    bad value is a usage error, before any work, that names the value and what is allowed."""

    def parse(text: str):
        try:
            return check(convert(text), "value", *args)
        except SettingError as exc:
            raise argparse.ArgumentTypeError(f"{text}: {exc.problem}") from None

    parse.__name__ = convert.__name__  # argparse's "invalid int value: 'x'"
    return parse


_ratio = _checked(check_ratio)
_positive = _checked(check_positive_number)
_fraction = _checked(check_fraction)
_nonnegative = _checked(check_nonnegative_number)
_count = _checked(check_positive_int, int)  # >= 1
_seed = _checked(check_positive_int, int, 0)  # >= 0
_patch_size = _checked(lambda p, _name: check_patch_size(p, (32, 32)), int)


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------
# long only because it declares one option per argparse call: no logic to split
def _add_train(subparsers):
    from .data import DATASETS
    from .masking import SCORES, STRATEGIES

    p = subparsers.add_parser(
        "train",
        help="train one model (vit, mae, cnn, vit_cnn, aae, pretrained_vit) to reconstruct "
        "masked patches",
        description=(
            "Build a model with helpers.models.build_model and train it with "
            "helpers.training.train.\n"
            "Files go to OUTPUT/RUN_NAME: best.keras (lowest validation loss), final.keras, "
            "history.csv.\n"
            "Running the same command again after an interruption resumes where it stopped;\n"
            "after a completed run it trains again from epoch 0."
        ),
        epilog=(
            "examples:\n"
            "  python -m helpers train --model vit --strategy random --ratio 0.5 --dataset sample "
            "--epochs 5 --output saved_models\n"
            "  python -m helpers train --model mae --ratio-range 0.3 0.7 --dataset cifar10 "
            "--data-dir data/cifar-10-batches-py --n-train 20000 --minutes 30 --output "
            "saved_models\n"
            "  python -m helpers train --model vit --recipe reference --epochs 5 --output "
            "saved_models\n"
            "  python -m helpers train --model pretrained_vit --preset vit_b16_folder "
            "--fine-tune head --epochs 2 --output saved_models"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        choices=BUILDERS,
        help="mask-token ViT, MAE-style ViT, convolutional autoencoder, ViT + CNN decoder, "
        "adversarial autoencoder, ViT refining biharmonic (the mask-token ViT started from the "
        "harmonic fill), or a pretrained ViT fine-tuned (--preset)",
    )
    p.add_argument(
        "--strategy",
        default=["random"],
        nargs="+",
        choices=STRATEGIES,
        help="masking strategy, or several: one of them drawn for every batch (default: random)",
    )
    ratio = p.add_mutually_exclusive_group()
    ratio.add_argument(
        "--ratio",
        type=_ratio,
        default=None,
        metavar="R",
        help="masking ratio in (0, 1) (default: 0.5)",
    )
    ratio.add_argument(
        "--ratio-range",
        type=_ratio,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="draw a ratio uniformly in [LOW, HIGH] for every batch instead of --ratio",
    )
    p.add_argument(
        "--score",
        default="variance",
        choices=tuple(SCORES),
        help="patch score of the importance strategy (default: variance)",
    )
    p.add_argument(
        "--dataset", default="sample", choices=DATASETS, help="dataset (default: sample, embedded)"
    )
    p.add_argument(
        "--data-dir", metavar="DIR", help="CIFAR-10 python-batch folder (--dataset cifar10)"
    )
    p.add_argument(
        "--grayscale",
        action="store_true",
        help="one-channel images (skimage.color.rgb2gray); the Transformers reach three channels "
        "through a learned 1x1 adapter",
    )
    p.add_argument(
        "--n-train",
        type=_seed,
        default=0,
        metavar="N",
        help="seeded random subset of N training images (default: all)",
    )
    p.add_argument(
        "--val-fraction",
        type=_fraction,
        default=0.1,
        metavar="F",
        help="fraction of the training images kept for validation (default: 0.1)",
    )
    p.add_argument(
        "--patch-size",
        type=_patch_size,
        default=4,
        metavar="P",
        help="patch side in pixels (default: 4)",
    )
    budget = p.add_argument_group("budget (one of them; default: 10 epochs)")
    budget.add_argument(
        "--epochs", type=_count, metavar="E", help="epochs (with --minutes: the most epochs)"
    )
    budget.add_argument(
        "--images",
        type=_count,
        metavar="N",
        help="training images to see (rounded up to whole epochs)",
    )
    budget.add_argument(
        "--minutes",
        type=_positive,
        metavar="M",
        help="wall-clock minutes; the learning rate warms up and decays over them (not "
        "deterministic)",
    )
    p.add_argument(
        "--batch-size", type=_count, default=64, metavar="B", help="batch size (default: 64)"
    )
    p.add_argument(
        "--seed",
        type=_seed,
        default=0,
        metavar="S",
        help="seed of the data subset, weights, masks (default: 0)",
    )
    p.add_argument(
        "--output",
        required=True,
        type=_output_dir,
        metavar="DIR",
        help="folder that holds the run folders",
    )
    p.add_argument(
        "--run-name",
        metavar="NAME",
        help="run folder name (default: MODEL-STRATEGY-RATIO-seedS, e.g. vit-random-0.50-seed0)",
    )
    p.add_argument(
        "--recipe",
        default="tuned",
        choices=RECIPES,
        help="tuned (default: sine-cosine position start, no dropout, peak lr 2e-3 for the "
        "Transformers, warm-up + cosine decay, flips, the psnr loss for vit), long (tuned with "
        "the psnr loss for cnn too: for 30 minutes and more) or reference (random position "
        "start, dropout 0.1, lr 1e-3 halved on plateaus, no flips, mse); in every recipe a hidden "
        "patch enters the Transformers as the mask token alone; the options below override it",
    )
    p.add_argument(
        "--lr", type=_positive, default=None, help="Adam learning rate (default: the recipe's)"
    )
    p.add_argument(
        "--lr-schedule",
        default=None,
        choices=("plateau", "cosine"),
        help="halve on plateau, or warm-up + cosine decay (default: the recipe's)",
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random horizontal flips (default: the recipe's)",
    )
    p.add_argument(
        "--loss-on",
        default=None,
        choices=("masked", "all"),
        help="MSE over the masked patches or over all (default: the recipe's)",
    )
    p.add_argument(
        "--loss",
        default=None,
        choices=("mse", "psnr"),
        help="mse, or psnr: minus each image's PSNR over those patches, averaged (the mean PSNR "
        "the tables report); default: the recipe's (psnr for vit, and for cnn in long; else mse)",
    )
    p.add_argument(
        "--early-stopping", action="store_true", help="stop when the validation loss stalls"
    )
    p.add_argument(
        "--patience",
        type=_count,
        default=10,
        metavar="E",
        help="epochs without improvement before stopping (default: 10)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="dtype policy: float32 (default), mixed_bfloat16 (CPU or GPU) or mixed_float16 (GPU, "
        "with loss scaling); loss and metrics stay float32",
    )
    p.add_argument(
        "--devices",
        type=_count,
        default=1,
        metavar="N",
        help="train data parallel on N local devices (GPUs; JAX: keras.distribution.DataParallel, "
        "TensorFlow: MirroredStrategy); --batch-size is the global batch, a multiple of N",
    )
    p.add_argument(
        "--workers",
        type=_count,
        default=1,
        metavar="N",
        help="threads that assemble the batches (default: 1); more where a GPU waits for them",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar (the default when not on a terminal)"
    )
    size = p.add_argument_group(
        "model size (default: the builder's defaults and the recipe's settings)"
    )
    size.add_argument("--embed-dim", type=_count, metavar="D", help="vit/mae: token width")
    size.add_argument(
        "--depth", type=_count, metavar="N", help="vit/mae: Transformer blocks (of the encoder)"
    )
    size.add_argument("--num-heads", type=_count, metavar="H", help="vit/mae: attention heads")
    size.add_argument(
        "--mlp-dim", type=_count, metavar="D", help="vit/mae: hidden width of the MLPs"
    )
    size.add_argument(
        "--pos-init",
        choices=("random", "sincos"),
        help="vit/mae: start of the learnable position embeddings (default: the recipe's)",
    )
    size.add_argument(
        "--fill",
        choices=("harmonic", "token"),
        help="vit, mae, vit_cnn: a hidden patch enters (mae: its decoder) as the mask token "
        "alone (default) or as a harmonic fill of the visible pixels plus the mask token, the "
        "head predicting a correction: a model refining a classical fill (vit_biharmonic)",
    )
    for flag, metavar, what in (
        ("--decoder-dim", "D", "decoder token width (default 64)"),
        ("--decoder-depth", "N", "decoder blocks (default 1)"),
        ("--decoder-num-heads", "H", "decoder attention heads (default 4)"),
        ("--decoder-mlp-dim", "D", "decoder MLP width (default 128)"),
    ):
        size.add_argument(flag, type=_count, metavar=metavar, help=f"mae: {what}")
    size.add_argument(
        "--min-mask-ratio",
        type=_ratio,
        metavar="R",
        help="mae: fewest hidden patches it handles (default: the lowest training ratio)",
    )
    size.add_argument(
        "--filters",
        type=_count,
        nargs="+",
        metavar="F",
        help="cnn, aae: filters per stage, e.g. 32 64 128",
    )
    size.add_argument(
        "--latent-dim",
        type=_count,
        metavar="D",
        help="vit_cnn: latent values per token; aae: code values per position of the bottleneck",
    )
    size.add_argument(
        "--latent-weight",
        type=_nonnegative,
        metavar="W",
        help="aae: weight of the encoder's adversarial loss against the prior (default 0.0001)",
    )
    size.add_argument(
        "--image-weight",
        type=_nonnegative,
        metavar="W",
        help="aae: weight of the image discriminator's adversarial loss (Context Encoders: "
        "0.001; default 0, no image discriminator)",
    )
    size.add_argument(
        "--decoder-filters",
        type=_count,
        nargs="+",
        metavar="F",
        help="vit_cnn: filters per doubling of the decoder, log2(patch size) of them, e.g. 64 32",
    )
    size.add_argument("--dropout", type=_fraction, metavar="P", help="dropout rate in [0, 1)")
    transfer = p.add_argument_group(
        "pretrained backbone (--model pretrained_vit; helpers.pretrained)"
    )
    transfer.add_argument(
        "--preset",
        metavar="PRESET_OR_FOLDER",
        help="keras-hub preset name (default vit_base_patch16_224_imagenet, google/vit-base-"
        "patch16-224), hf://google/vit-base-patch16-224, or a local folder (Keras preset or "
        "Hugging Face config.json + model.safetensors)",
    )
    transfer.add_argument(
        "--fine-tune",
        choices=("head", "all"),
        help="head: the backbone frozen (default); all: the backbone trains too, slower",
    )
    transfer.add_argument(
        "--backbone-lr-scale",
        type=_positive,
        metavar="S",
        help="with --fine-tune all: the backbone's learning rate as a fraction of --lr "
        "(default 0.1)",
    )
    transfer.add_argument(
        "--head-dim", type=_count, metavar="D", help="width of the decoding head (default 64)"
    )
    p.set_defaults(func=_cmd_train)


_TRANSFORMER_SIZE = ("embed_dim", "depth", "num_heads", "mlp_dim", "pos_init")
_VIT_SIZE = _TRANSFORMER_SIZE + ("fill",)
_MAE_SIZE = (
    "decoder_dim",
    "decoder_depth",
    "decoder_num_heads",
    "decoder_mlp_dim",
    "min_mask_ratio",
    "fill",
)
_SIZE_OPTIONS = {
    "vit": _VIT_SIZE,
    "mae": _TRANSFORMER_SIZE + _MAE_SIZE,
    "cnn": ("filters",),
    "vit_cnn": _VIT_SIZE + ("latent_dim", "decoder_filters"),
    "aae": ("filters", "latent_dim", "latent_weight", "image_weight"),
    "pretrained_vit": ("preset", "fine_tune", "backbone_lr_scale", "head_dim"),
}  # per --model


def _model_kwargs(args, low: float) -> dict:
    """Builder keyword arguments from the size options; options of another model kind are errors."""
    allowed = _SIZE_OPTIONS[args.model]
    kwargs = {
        "image_shape": (32, 32, 1 if args.grayscale else 3),
        "patch_size": args.patch_size,
        "seed": args.seed,
        "mixed_precision": args.precision,
    }
    for name in dict.fromkeys(sum(_SIZE_OPTIONS.values(), ())) | {"dropout": None}:
        value = getattr(args, name)
        if value is None:
            continue
        if name != "dropout" and name not in allowed:
            owners = [k for k, names in _SIZE_OPTIONS.items() if name in names]
            raise _UsageError(
                f"--{name.replace('_', '-')} is an option of --model {'/'.join(owners)}, not of "
                f"--model {args.model}"
            )
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    if args.model == "mae":
        mmr = kwargs.setdefault("min_mask_ratio", low)
        from .masking import n_masked

        n_patches = (32 // args.patch_size) ** 2 if 32 % args.patch_size == 0 else None
        if n_patches and n_masked(mmr, n_patches) > n_masked(low, n_patches):
            raise _UsageError(
                f"--min-mask-ratio {mmr!r}: the MAE would need at least {n_masked(mmr, n_patches)} "
                "hidden patches, "
                f"but the lowest training ratio {low} hides {n_masked(low, n_patches)}; allowed: "
                f"--min-mask-ratio <= {low}"
            )
    return kwargs


def _default_run_name(args) -> str:
    if args.ratio_range:
        ratio = f"{args.ratio_range[0]:.2f}to{args.ratio_range[1]:.2f}"
    else:
        ratio = f"{args.ratio:.2f}"
    return f"{args.model}-{'+'.join(args.strategy)}-{ratio}-seed{args.seed}"


def _train_ratio(args):
    """The ratio (or ratio range) and the lowest ratio of ``train``'s options."""
    if not args.ratio_range:
        args.ratio = 0.5 if args.ratio is None else args.ratio
        return args.ratio, args.ratio
    low, high = args.ratio_range
    if low > high:
        raise _UsageError(f"--ratio-range {low} {high}: LOW must be <= HIGH")
    return (low, high), low


def _check_train_args(args) -> None:
    """The checks of ``train`` that involve several options (single values are checked by their
    argparse types); sets the default budget."""
    given = {"--epochs": args.epochs, "--images": args.images, "--minutes": args.minutes}
    budgets = [option for option, value in given.items() if value is not None]
    if len(budgets) > 1 and budgets != ["--epochs", "--minutes"]:
        raise _UsageError(
            f"{' and '.join(budgets)}: give one budget (--minutes may come with --epochs as a cap)"
        )
    if not budgets:
        args.epochs = 10
    data_dir = args.data_dir
    if (
        args.dataset == "cifar10"
        and data_dir is not None
        and not Path(data_dir).expanduser().is_dir()
    ):
        raise _UsageError(
            f"--data-dir {data_dir!r}: no such folder (a CIFAR-10 python-batch folder is expected)"
        )
    args.run_name = args.run_name or _default_run_name(args)
    if os.sep in args.run_name or args.run_name in ("", ".", ".."):
        raise _UsageError(f"--run-name {args.run_name!r}: must be a plain folder name")


def _cmd_train(args) -> int:
    from .data import DatasetError, load_dataset
    from .models import build_model
    from .training import BACKUP, FINAL, HISTORY, read_history, train

    ratio, low = _train_ratio(args)
    _check_train_args(args)
    from .devices import check_devices

    check_devices(args.devices, args.batch_size)
    kwargs = _model_kwargs(args, low)
    try:
        data = load_dataset(
            args.dataset,
            data_dir=args.data_dir,
            n_train=args.n_train or None,
            val_fraction=args.val_fraction,
            seed=args.seed,
            grayscale=args.grayscale,
        )
    except (DatasetError, ValueError) as exc:
        raise _UsageError(f"--dataset {args.dataset}: {exc}") from None
    try:
        model = build_model(args.model, recipe=args.recipe, **kwargs)
    except SettingError:  # its option is named: --precision
        raise
    except (ValueError, TypeError) as exc:
        raise _UsageError(f"--model {args.model}: {exc}") from None

    folder = args.output / args.run_name
    shown = "-".join(f"{r:.2f}" for r in ratio) if isinstance(ratio, tuple) else f"{ratio:.2f}"
    print(data.summary())
    print(
        f"{args.model}: {model.count_params():,} parameters; {'/'.join(args.strategy)} masks, "
        f"ratio {shown}; run folder {folder}"
    )
    if (folder / BACKUP).exists() and (folder / HISTORY).exists():
        done = len(read_history(folder / HISTORY))
        of = f" of {args.epochs}" if args.minutes is None else ""
        print(f"resuming the interrupted run in {folder} ({done}{of} epochs in history.csv)")
    elif (folder / FINAL).exists():
        print(f"note: {folder} holds a completed run; training again from epoch 0 replaces it")
    options = ("epochs", "images", "minutes", "batch_size", "seed", "recipe", "lr", "lr_schedule")
    options += ("early_stopping", "patience", "augment", "loss_on", "loss", "devices", "workers")
    try:
        result = train(
            model,
            data,
            strategy=args.strategy[0] if len(args.strategy) == 1 else list(args.strategy),
            ratio=ratio,
            run_dir=folder,
            score_fn=args.score,
            verbose=1 if (sys.stdout.isatty() and not args.quiet) else 0,
            **{name: getattr(args, name) for name in options},
        )
    except ValueError as exc:  # settings only the training data can check (an MAE's ratio)
        raise _UsageError(str(exc)) from None
    _print_training(result, folder)
    return 0


def _print_training(result: dict, folder: Path) -> None:
    from .training import BEST, FINAL, HISTORY

    history = result["history"]
    final = {k: history[k][-1] for k in ("loss", "val_loss") if history.get(k)}
    losses = ", ".join(f"{k} {v:.5f}" for k, v in final.items())
    if history.get("val_loss"):
        losses += f", best val_loss {min(history['val_loss']):.5f}"
    print(
        f"trained {result['epochs']} epoch(s), {result['images_seen']:,} images seen "
        f"({result['seconds']:.1f} s this call, compilation included): {losses}"
    )
    print(f"best model:  {folder / BEST}")
    print(f"final model: {folder / FINAL}")
    print(f"history:     {folder / HISTORY}")


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------
# long only because it declares one option per argparse call: no logic to split
def _add_evaluate(subparsers):
    from .data import DATASETS
    from .evaluation import SCORE_CHOICES
    from .masking import STRATEGIES

    p = subparsers.add_parser(
        "evaluate",
        help="score a saved model (or biharmonic inpainting, or the mean-colour guess) on a test "
        "set with fixed masks",
        description=(
            "Reconstruct the test images (test_batch of a CIFAR-10 python-batch folder, all or the "
            "first N;\n"
            "or the test split of the embedded sample set) with masks drawn from a fixed seed, and "
            "write\n"
            "OUTPUT/metrics.json and OUTPUT/metrics.csv: masked-region MSE and PSNR, whole-image "
            "PSNR and\n"
            "SSIM (mean and std over the images) with the settings. Only test_batch is needed."
        ),
        epilog=(
            "examples:\n"
            "  python -m helpers evaluate --model saved_models/vit-random-0.50-seed0/best.keras "
            "--dataset cifar10 "
            "--data-dir data/cifar-10-batches-py --strategy random --ratio 0.5 --output "
            "results/eval-vit\n"
            "  python -m helpers evaluate --model biharmonic --dataset sample --strategy rows "
            "--ratio 0.3 "
            "--n-test 200 --output results/eval-biharmonic\n"
            "  python -m helpers evaluate --model mean_colour --dataset sample --strategy rows "
            "--ratio 0.3 "
            "--n-test 200 --output results/eval-mean-colour"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="PATH|biharmonic|mean_colour",
        help="a saved .keras model, or biharmonic (inpainting) or mean_colour (the visible mean "
        "colour), not learned",
    )
    p.add_argument(
        "--dataset", default="cifar10", choices=DATASETS, help="dataset (default: cifar10)"
    )
    p.add_argument(
        "--data-dir", metavar="DIR", help="folder holding test_batch (default: the Keras cache)"
    )
    p.add_argument(
        "--grayscale",
        action="store_true",
        help="one-channel images (skimage.color.rgb2gray); the Transformers reach three channels "
        "through a learned 1x1 adapter",
    )
    p.add_argument("--strategy", required=True, choices=STRATEGIES, help="masking strategy")
    p.add_argument(
        "--ratio", required=True, type=_ratio, metavar="R", help="masking ratio in (0, 1)"
    )
    p.add_argument(
        "--output",
        required=True,
        type=_output_dir,
        metavar="DIR",
        help="folder for metrics.json and metrics.csv",
    )
    p.add_argument(
        "--n-test",
        type=_seed,
        default=0,
        metavar="N",
        help="the first N test images (default: all)",
    )
    p.add_argument(
        "--mask-seed", type=_seed, default=0, metavar="S", help="seed of the masks (default: 0)"
    )
    p.add_argument(
        "--patch-size",
        type=_patch_size,
        default=4,
        metavar="P",
        help="patch side in pixels (default: 4)",
    )
    p.add_argument(
        "--score",
        choices=SCORE_CHOICES,
        default=None,
        help="importance strategy: patch score (default: variance; gradient: the model's own "
        "gradients)",
    )
    p.add_argument(
        "--batch-size",
        type=_count,
        default=256,
        metavar="B",
        help="images per prediction batch (default: 256)",
    )
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args) -> int:
    from . import evaluation

    if args.score is not None and args.strategy != "importance":
        print(
            f"note: --score {args.score} is ignored: it applies to --strategy importance only",
            file=sys.stderr,
        )
    results = evaluation.run_evaluation(
        args.model,
        dataset=args.dataset,
        data_dir=args.data_dir,
        strategy=args.strategy,
        ratio=args.ratio,
        n_test=args.n_test,
        mask_seed=args.mask_seed,
        patch_size=args.patch_size,
        score=args.score if args.strategy == "importance" else None,
        batch_size=args.batch_size,
        grayscale=args.grayscale,
    )
    json_path, csv_path = evaluation.write_results(args.output, results)
    print(evaluation.format_table(results))
    print(f"\nwritten: {json_path}, {csv_path} ({results['seconds']:.1f} s)")
    return 0


# --------------------------------------------------------------------------------------------
# grade
# --------------------------------------------------------------------------------------------
# long only because it declares one option per argparse call: no logic to split
def _add_grade(subparsers):
    from .grading import GRADED_STRATEGIES, MODEL_NAME

    p = subparsers.add_parser(
        "grade",
        help="score every student's submitted model on a hidden test set (grades.csv, "
        "leaderboard.md)",
        description=(
            "Grade one .keras model per student folder of SUBMISSIONS on the test_batch of a\n"
            "hidden CIFAR-10 python-batch folder, with random, rows and columns masks from a mask "
            "seed\n"
            "the students do not know (a fresh one unless --mask-seed is given), next to "
            "biharmonic\n"
            "inpainting and the mean-colour guess on the same masks. Each model is loaded in safe "
            "mode\n"
            "(no Lambda layers, no Python code) in its own process with a time and a memory "
            "limit;\n"
            "a submission that cannot be graded gets a row saying why. Writes OUTPUT/grades.csv,\n"
            "OUTPUT/leaderboard.md (ranking and rubric) and OUTPUT/grading.json (settings, mask "
            "seed).\n"
            "Exit code 0 once every submission has a row; 2 for a wrong command line."
        ),
        epilog=(
            "layout:\n"
            "  SUBMISSIONS/alice/model.keras\n"
            "  SUBMISSIONS/bob/best.keras     (one .keras file per folder, or name one "
            f"{MODEL_NAME})\n"
            "example:\n"
            "  python -m helpers grade --submissions submissions --data-dir "
            "hidden/cifar-10-batches-py --output grades"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--submissions", required=True, metavar="DIR", help="one folder per student")
    p.add_argument(
        "--data-dir", required=True, metavar="DIR", help="hidden folder holding test_batch"
    )
    p.add_argument(
        "--output",
        required=True,
        type=_output_dir,
        metavar="DIR",
        help="folder for grades.csv, leaderboard.md and grading.json",
    )
    p.add_argument(
        "--ratio", type=_ratio, default=0.5, metavar="R", help="masking ratio (default: 0.5)"
    )
    p.add_argument(
        "--strategies",
        nargs="+",
        choices=GRADED_STRATEGIES,
        default=list(GRADED_STRATEGIES),
        help="masking strategies (default: all three)",
    )
    p.add_argument(
        "--n-test",
        type=_seed,
        default=0,
        metavar="N",
        help="the first N test images (default: all)",
    )
    p.add_argument(
        "--mask-seed",
        type=_seed,
        default=None,
        metavar="S",
        help="seed of the masks (default: a fresh secret one, written to grading.json)",
    )
    p.add_argument(
        "--timeout",
        type=_positive,
        default=600.0,
        metavar="SECONDS",
        help="time limit of each model's process (default: 600)",
    )
    p.add_argument(
        "--memory-mb",
        type=_positive,
        default=4096.0,
        metavar="MB",
        help="memory limit of each model's process (default: 4096)",
    )
    p.add_argument(
        "--max-model-mb",
        type=_positive,
        default=200.0,
        metavar="MB",
        help="largest model file accepted, packed or unpacked (default: 200)",
    )
    p.set_defaults(func=_cmd_grade)


def _cmd_grade(args) -> int:
    from .grading import grade

    result = grade(
        args.submissions,
        args.data_dir,
        args.output,
        ratio=args.ratio,
        strategies=args.strategies,
        n_test=args.n_test,
        mask_seed=args.mask_seed,
        timeout=args.timeout,
        memory_mb=args.memory_mb,
        max_model_mb=args.max_model_mb,
    )
    print(result["paths"][1].read_text())  # leaderboard.md
    print("written: " + ", ".join(str(p) for p in result["paths"]))
    return 0


def _add_course(subparsers):
    from .grading import EXERCISE_NOTEBOOKS

    p = subparsers.add_parser(
        "course",
        help="an nbgrader course folder with the notebooks' exercises",
        description=(
            "Write an nbgrader course folder: nbgrader_config.py and source/ASSIGNMENT/ with the\n"
            f"notebooks that hold exercises ({', '.join(EXERCISE_NOTEBOOKS)}),\n"
            "the complete solution versions with their outputs cleared. Then, in that folder:\n"
            "nbgrader generate_assignment ASSIGNMENT (student versions in release/), collect the\n"
            "students' notebooks in submitted/STUDENT/ASSIGNMENT/, nbgrader autograde ASSIGNMENT,\n"
            "nbgrader generate_feedback ASSIGNMENT, nbgrader export (grades.csv)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--output", required=True, type=_output_dir, metavar="DIR", help="course folder")
    p.add_argument(
        "--assignment", default="mim", metavar="NAME", help="assignment name (default: mim)"
    )
    p.add_argument(
        "--timeout",
        type=_count,
        default=1800,
        metavar="SECONDS",
        help="longest a notebook cell may run when nbgrader executes it (default: 1800)",
    )
    p.add_argument(
        "--memory-mb",
        type=_positive,
        default=16384.0,
        metavar="MB",
        help="address space of each notebook's kernel (default: 16384; TensorFlow maps ~3,200)",
    )
    p.set_defaults(func=_cmd_course)


def _cmd_course(args) -> int:
    from .grading import make_course

    folder = make_course(
        args.output, args.assignment, timeout=args.timeout, memory_mb=args.memory_mb
    )
    print(f"course folder: {folder}")
    print(f"next: cd {folder} && nbgrader generate_assignment {args.assignment}")
    return 0


# --------------------------------------------------------------------------------------------
# probe
# --------------------------------------------------------------------------------------------
def _add_probe(subparsers):
    from .data import DATASETS

    p = subparsers.add_parser(
        "probe",
        help="linear probe of a trained model's encoder: accuracy, macro-F1, Cohen's kappa",
        description=(
            "Freeze the encoder of a saved model (vit, mae, cnn, vit_cnn, aae), take one feature "
            "vector per image\n"
            "with nothing hidden, train BatchNorm (no scale, no shift) + one Dense layer on the "
            "training labels\n"
            "and score the test images: accuracy, macro-F1, Cohen's kappa. Two baselines in the "
            "same run: the\n"
            "raw pixels and the same encoder with random weights. Writes OUTPUT/probe.csv,\n"
            "OUTPUT/probe.json and OUTPUT/confusion.png."
        ),
        epilog=(
            "example:\n"
            "  python -m helpers probe --model saved_models/03_vit/best.keras --dataset cifar10 "
            "--data-dir ../shared/data/cifar-10-batches-py --output runs/probe-vit"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="PATH", help="a saved .keras model")
    p.add_argument(
        "--dataset", default="cifar10", choices=DATASETS, help="dataset (default: cifar10)"
    )
    p.add_argument("--data-dir", metavar="DIR", help="CIFAR-10 folder (default: the Keras cache)")
    p.add_argument(
        "--grayscale",
        action="store_true",
        help="one-channel images (skimage.color.rgb2gray); the Transformers reach three channels "
        "through a learned 1x1 adapter",
    )
    p.add_argument(
        "--output", required=True, type=_output_dir, metavar="DIR", help="folder for the results"
    )
    p.add_argument(
        "--n-train", type=_seed, default=0, metavar="N", help="training images (default: all)"
    )
    p.add_argument(
        "--n-test", type=_seed, default=0, metavar="N", help="test images (default: all)"
    )
    p.add_argument(
        "--epochs", type=_count, default=100, metavar="E", help="probe epochs (default: 100)"
    )
    p.add_argument(
        "--lr", type=_positive, default=1e-2, metavar="LR", help="Adam's rate (default: 1e-2)"
    )
    p.add_argument("--seed", type=_seed, default=0, metavar="S", help="seed (default: 0)")
    p.set_defaults(func=_cmd_probe)


def _cmd_probe(args) -> int:
    from . import probe

    result = probe.run_probe(
        args.model,
        dataset=args.dataset,
        data_dir=args.data_dir,
        n_train=args.n_train or None,
        n_test=args.n_test or None,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        grayscale=args.grayscale,
    )
    paths = probe.write_probe(args.output, result)
    print(probe.format_probe(result))
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


# --------------------------------------------------------------------------------------------
# sweep
# --------------------------------------------------------------------------------------------
# long only because it declares one option per argparse call: no logic to split
def _add_sweep(subparsers):
    from .data import DATASETS
    from .experiments import MODEL_SIZES, PLANS, SweepConfig
    from .masking import STRATEGIES

    defaults = SweepConfig()
    p = subparsers.add_parser(
        "sweep",
        help="the strategy x ratio x predictor sweep of notebook 05, headless, with the linear "
        "probe of each encoder as an option",
        description=(
            "Train (or reuse) the models of each (strategy, ratio, predictor) cell, score them "
            "on the same test\n"
            "images with the same masks, and append one row per cell to RUN/metrics.csv "
            "(provenance.json beside it,\n"
            "models in RUN/models/). A sweep started again skips the finished cells. With "
            "--probe-epochs E the\n"
            "linear probe of every trained encoder (helpers.probe) is recorded next to its PSNR, "
            "with its two\n"
            "baselines in RUN/probe.csv: with --plan per_cell, which masking teaches the best "
            "features."
        ),
        epilog=(
            "example (which masking teaches most, on the shared CIFAR-10 subset):\n"
            "  python -m helpers sweep --run runs/probe-cifar --dataset cifar10 --data-dir "
            "../shared/data/cifar-10-batches-py \\\n"
            "      --predictors mae --strategies random rows columns --plan per_cell --epochs 25 "
            "--probe-epochs 50"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--run",
        required=True,
        metavar="NAME|DIR",
        help="the run folder; a plain name is a folder of the project's results/ (or of "
        "$HELPERS_RESULTS_DIR)",
    )
    p.add_argument(
        "--dataset", default="sample", choices=DATASETS, help="dataset (default: sample)"
    )
    p.add_argument("--data-dir", metavar="DIR", help="CIFAR-10 folder (default: the Keras cache)")
    p.add_argument(
        "--grayscale", action="store_true", help="one-channel images (skimage.color.rgb2gray)"
    )
    p.add_argument(
        "--n-train", type=_seed, default=0, metavar="N", help="training images (default: all)"
    )
    p.add_argument(
        "--n-test", type=_seed, default=200, metavar="N", help="test images (default: 200; 0: all)"
    )
    p.add_argument(
        "--strategies",
        nargs="+",
        choices=STRATEGIES,
        default=list(defaults.strategies),
        metavar="S",
        help=f"masking strategies (default: all of {', '.join(STRATEGIES)})",
    )
    p.add_argument(
        "--ratios",
        nargs="+",
        type=_ratio,
        default=list(defaults.ratios),
        metavar="R",
        help="masking ratios (default: 0.3 0.5 0.7)",
    )
    p.add_argument(
        "--predictors",
        nargs="+",
        choices=PREDICTORS,
        default=list(defaults.predictors),
        metavar="P",
        help=f"predictors (default: all of {', '.join(PREDICTORS)})",
    )
    p.add_argument(
        "--plan",
        choices=PLANS,
        default=defaults.plan,
        help="mixed: one model per predictor; per_strategy; per_cell (default: mixed)",
    )
    p.add_argument(
        "--epochs",
        type=_count,
        default=defaults.epochs,
        metavar="E",
        help=f"training epochs per model (default: {defaults.epochs})",
    )
    p.add_argument(
        "--batch-size",
        type=_count,
        default=defaults.batch_size,
        metavar="B",
        help=f"batch size (default: {defaults.batch_size})",
    )
    p.add_argument(
        "--model-size",
        choices=sorted(MODEL_SIZES),
        default="small",
        help="small (ViT tokens of 64, 2 blocks) or reference (notebook 03's); default small",
    )
    p.add_argument(
        "--recipe",
        choices=RECIPES,
        default=defaults.recipe,
        help=f"training recipe (default: {defaults.recipe})",
    )
    p.add_argument("--seed", type=_seed, default=0, metavar="S", help="seed (default: 0)")
    p.add_argument(
        "--probe-epochs",
        type=_seed,
        default=0,
        metavar="E",
        help="> 0: the linear probe of each trained encoder, trained E epochs (default: 0, none)",
    )
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args) -> int:
    from . import experiments, report
    from .data import DatasetError, load_dataset

    run = experiments.Run(args.run)
    writable_dir(run.path, "run")  # before the data is read or anything is trained
    config = experiments.SweepConfig(
        strategies=args.strategies,
        ratios=args.ratios,
        predictors=args.predictors,
        plan=args.plan,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        recipe=args.recipe,
        model_kwargs=experiments.model_sizes(args.model_size),
        probe_epochs=args.probe_epochs,
    )
    try:
        ds = load_dataset(
            args.dataset,
            data_dir=args.data_dir,
            n_train=args.n_train or None,
            n_test=args.n_test or None,
            seed=args.seed,
            grayscale=args.grayscale,
        )
    except DatasetError as exc:
        raise SettingError("data_dir", args.data_dir, str(exc)) from None
    extra = {"profile": "python -m helpers sweep", "model_size": args.model_size}
    rows = experiments.run_sweep(ds, config, run, extra_provenance=extra)
    print("masked-region PSNR (dB), mean over the test images; best per row in **bold**")
    print(report.results_table(rows, "psnr_masked_mean"))
    for predictor in (p for p in config.predictors if report.probe_cells(rows, p)):
        print(
            f"\nlinear probe of the {report.NAMES.get(predictor, predictor)} encoders: accuracy "
            "(masked-region PSNR of the model)"
        )
        print(report.probe_table(rows, predictor))
        for sentence in report.probe_findings(
            rows, run.probe_rows(), predictor, n_test=run.provenance()["probe"]["n_test"]
        ):
            print(f"- {sentence}")
    print(f"\nwritten: {run.path}")
    return 0


# --------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------
# long only because it declares one option per argparse call: no logic to split
def _add_bench(subparsers):
    p = subparsers.add_parser(
        "bench",
        help="benchmarks: speed (masks, metrics, training throughput) and quality",
        description="Benchmarks, measured in one run and reported as ratios where two things are "
        "compared.",
        epilog=(
            "examples:\n"
            "  python -m helpers bench speed\n"
            "  python -m helpers bench speed --quick\n"
            "  python -m helpers bench quality --data-dir data/cifar-10-batches-py "
            "--minutes-per-model 10"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    speed = sub.add_parser(
        "speed",
        help="mask generation, metrics vs skimage, ViT vs MAE training throughput",
        description=(
            "Mask generation for 50,000 images; metrics on 10,000 images and batched SSIM\n"
            "against a per-image skimage loop; training images/s of the mask-token ViT and the\n"
            "MAE-style ViT (default sizes, with the mask token alone and with the harmonic fill)\n"
            "at 50% and 75% masking against a plain-Keras ViT of the same configuration, with and\n"
            "without per-batch masks and XLA; the autoencoders and the pretrained ViT (ViT-B/16\n"
            "size, random weights); the input pipeline alone. Ratios measured in one run. About\n"
            "7 minutes on 2 CPU cores (419 s and 421 s measured); --quick is much smaller (tiny\n"
            "models, for tests)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    speed.add_argument(
        "--quick",
        action="store_true",
        help="much smaller sizes and tiny models (seconds, for tests)",
    )
    speed.set_defaults(func=_cmd_bench_speed)
    quality = sub.add_parser(
        "quality",
        help="reconstruction quality of each predictor for a fixed training time "
        "(helpers.bench.bench_quality)",
        description="Train each predictor for a fixed time on CIFAR-10 and compare the "
        "reconstruction quality.",
    )
    quality.add_argument(
        "--data-dir", required=True, metavar="DIR", help="CIFAR-10 python-batch folder"
    )
    quality.add_argument(
        "--minutes-per-model",
        type=_positive,
        metavar="M",
        help="training time per model in minutes",
    )
    quality.add_argument(
        "--output",
        type=_output_dir,
        metavar="DIR",
        help="folder for the results (default: runs/bench_quality)",
    )
    quality.add_argument(
        "--plan",
        choices=_quality.QUALITY_PLANS,
        default="mixed",
        help="mixed: one model per predictor on all strategies (default); per_strategy: one per "
        "strategy",
    )
    quality.add_argument(
        "--predictors",
        nargs="+",
        choices=PREDICTORS,
        metavar="P",
        help=f"predictors to train and score (default: {' '.join(PREDICTORS)})",
    )
    quality.add_argument(
        "--recipe",
        choices=RECIPES,
        default="long",
        help="model settings (helpers.recipes): long (default: for 30 minutes per model; tuned "
        "with the PSNR loss for the CNN too), tuned (the notebooks' short budgets) or reference "
        "(the seed design)",
    )
    quality.add_argument(
        "--grayscale",
        action="store_true",
        help="train and score on one-channel images (skimage.color.rgb2gray)",
    )
    quality.add_argument(
        "--latent-weight",
        type=_nonnegative,
        metavar="W",
        help="aae: weight of the adversarial loss against the prior (default 0.0001)",
    )
    quality.add_argument(
        "--image-weight",
        type=_nonnegative,
        metavar="W",
        help="aae: weight of the image discriminator's adversarial loss (default 0: none)",
    )
    quality.add_argument(
        "--loss",
        default=None,
        choices=("mse", "psnr"),
        help="training loss of every learned predictor: mse, or psnr (minus each image's "
        "masked-region PSNR, averaged); default: each model's in the recipe (long: psnr for the "
        "ViT and the CNN, mse for the others)",
    )
    quality.add_argument(
        "--seed",
        type=_seed,
        default=0,
        metavar="S",
        help="seed of the weights, the validation split and the training masks (default: 0; the "
        "test masks keep seed 0, so runs of different seeds are scored on the same masks)",
    )
    ratios = quality.add_mutually_exclusive_group()
    ratios.add_argument(
        "--ratio-range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="train on a mask ratio drawn per batch from LOW-HIGH, as the notebooks do "
        "(default: 0.3 0.7)",
    )
    ratios.add_argument(
        "--ratio", type=float, metavar="R", help="train on masks of this one ratio instead"
    )
    quality.add_argument(
        "--eval-ratios",
        nargs="+",
        type=float,
        metavar="R",
        help="mask ratios the models are scored at (default: the training ratio, or the range's "
        "low, middle and high)",
    )
    quality.set_defaults(func=_cmd_bench_quality)


def _cmd_bench_speed(args) -> int:
    import keras

    from . import bench

    print(
        f"bench speed{' --quick' if args.quick else ''}: keras {keras.__version__}, backend "
        f"{keras.backend.backend()}, "
        f"{os.cpu_count()} CPU(s)",
        flush=True,
    )
    start = time.perf_counter()

    def report(title, rows):
        print(f"\n{title}\n{bench.format_rows(rows)}", flush=True)

    bench.bench_speed(quick=args.quick, report=report)
    print(f"\ndone in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_bench_quality(args) -> int:
    if not Path(args.data_dir).expanduser().is_dir():
        raise _UsageError(
            f"--data-dir {args.data_dir!r}: no such folder (a CIFAR-10 python-batch folder is "
            "expected)"
        )
    kwargs = {"data_dir": args.data_dir, "plan": args.plan, "recipe": args.recipe}
    kwargs["grayscale"], kwargs["loss"] = args.grayscale, args.loss
    aae = {k: getattr(args, k) for k in ("latent_weight", "image_weight")}
    aae = {k: v for k, v in aae.items() if v is not None}
    if aae:
        if args.predictors and "aae" not in args.predictors:
            names = " / ".join(f"--{k.replace('_', '-')}" for k in aae)
            raise _UsageError(f"{names}: options of the aae predictor, which --predictors omits")
        kwargs["model_kwargs"] = {"aae": aae}
    if args.minutes_per_model is not None:
        kwargs["minutes_per_model"] = args.minutes_per_model
    if args.output is not None:
        kwargs["output"] = args.output
    if args.predictors:
        kwargs["predictors"] = tuple(args.predictors)
    if args.eval_ratios:
        kwargs["eval_ratios"] = tuple(args.eval_ratios)
    if args.ratio_range:
        kwargs["ratio"] = tuple(args.ratio_range)
    if args.ratio is not None:
        kwargs["ratio"] = args.ratio
    if args.seed:
        kwargs["seed"] = args.seed
    import keras

    print(
        f"bench quality: keras {keras.__version__}, backend {keras.backend.backend()}, "
        f"{os.cpu_count()} CPU(s)",
        flush=True,
    )
    start = time.perf_counter()
    rows = _quality.bench_quality(**kwargs)
    print(_quality.format_quality(rows))
    print(f"\nNumPy float32 2048² matmul at the start: {rows[0]['matmul_gflops']:.0f} GFLOP/s")
    print(f"\ndone in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


# --------------------------------------------------------------------------------------------
# checkpoint
# --------------------------------------------------------------------------------------------
def _add_checkpoint(subparsers):
    from .checkpoints import NAMES

    p = subparsers.add_parser(
        "checkpoint",
        help="publish a trained run as a course checkpoint (checkpoints/NAME.keras + NAME.json)",
        description="Copy RUN/best.keras to checkpoints/NAME.keras and write NAME.json: the "
        "training command,\nthe commit, a hash of the training data, minutes, epochs, images "
        "seen, and the metrics\non the folder's test_batch (held out) and on a fixed set of "
        "sample images.",
        epilog="example:\n  python -m helpers checkpoint --run runs/course/vit --name vit "
        '--data-dir runs/course_data \\\n    --command "python -m helpers train --model vit ..."',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", required=True, metavar="DIR", help="a run folder of train")
    p.add_argument("--name", required=True, choices=NAMES, help="the checkpoint's name")
    p.add_argument(
        "--data-dir",
        required=True,
        metavar="DIR",
        help="the CIFAR-10 folder it was trained on (its test_batch: never trained on)",
    )
    p.add_argument("--command", required=True, help="the train command that made the run")
    p.add_argument("--folder", metavar="DIR", help="where to write (default: checkpoints/)")
    p.set_defaults(func=_cmd_checkpoint)


def _cmd_checkpoint(args) -> int:
    from .checkpoints import heldout_table, provenance, publish

    target = publish(args.run, args.name, args.data_dir, args.command, folder=args.folder)
    record = provenance(args.name, target.parent)
    print(
        f"{target} ({record['epochs']} epochs, {record['images_seen']:,} images seen, "
        f"{record['minutes']} min); held-out masked-region PSNR (dB) at 50 %:"
    )
    for row in heldout_table(record):
        print(
            f"  {row['predictor']:<20}"
            + "".join(f"{row[s]:>9.2f}" for s in row if s != "predictor")
        )
    return 0


# --------------------------------------------------------------------------------------------
COMMANDS = (
    _add_run,
    _add_train,
    _add_checkpoint,
    _add_evaluate,
    _add_probe,
    _add_sweep,
    _add_grade,
    _add_course,
    _add_bench,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Masked image modeling with Vision Transformers: run the course notebooks "
        "headless, train and\n"
        "evaluate one model, probe its encoder, grade students' models, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # every command imports Keras; --help and usage errors have exited before this
    _quiet_tensorflow()
    try:
        return args.func(args)
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SettingError as exc:  # a bad value found by the package's checks
        print(f"error: {exc.cli_message()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
