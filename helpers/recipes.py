"""Training recipes: the settings that decide how well a model learns in a given budget.

``tuned`` (the default of the builders, ``train``, the notebooks and the sweep) is what the quality
benchmark measured best for short CPU budgets; ``long`` (the default of ``bench quality``, and
``--recipe long`` anywhere) is ``tuned`` with minus each image's PSNR as the CNN's loss too, for
budgets of half an hour and more; ``reference`` is the seed design, one parameter away for
comparison (notebook 03 trains both ``tuned`` and ``reference``).

In every recipe a hidden patch enters the Transformers (``vit``, ``mae``, ``vit_cnn``) as the
learned mask token alone, and the head predicts its pixels: what they score is what they learned.
``vit_biharmonic`` ("ViT refining biharmonic") is the one predictor that starts from a classical
fill: a hidden patch enters as the harmonic fill of the visible pixels plus the mask token, and the
head predicts a correction to that fill. It is never a default.

| setting | ``tuned`` and ``long`` | ``reference`` |
|---|---|---|
| Transformer position embeddings start from | the 2-D sine-cosine table (still learned) | small
random values |
| dropout in the Transformer blocks and the CNN | 0 | 0.1 |
| CNN autoencoder | U-Net skip connections (each encoder stage's input joins the decoder) | plain
encoder-decoder |
| learning rate (Adam) | peak 2e-3 (Transformers), 3e-3 (CNN), linear warm-up then cosine decay |
1e-3, halved on plateaus |
| horizontal flips | yes | no |
| loss | minus each image's PSNR (mask-token ViT; ``long``: the CNN too), else the MSE | the MSE |

The measurements behind these choices are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

from ._checks import check_choice, check_fraction, check_positive_number

LEARNED = (
    "vit",
    "mae",
    "cnn",
    "vit_cnn",
    "aae",
    "vit_biharmonic",
)  # the Keras models of helpers.models, by their builder's name
# built around a downloaded backbone (helpers.pretrained), so not in the sweep's LEARNED
PRETRAINED = ("pretrained_vit",)
BUILDERS = (*LEARNED, *PRETRAINED)  # every name build_model takes
NON_LEARNED = ("biharmonic", "mean_colour")
PREDICTORS = (*LEARNED, *NON_LEARNED)
VIT_FILLS = ("harmonic", "token")  # how a hidden patch enters the mask-token ViT: build_vit
# what each predictor is called in tables, figures and sentences
LABELS = {
    "vit": "mask-token ViT",
    "mae": "MAE-style ViT",
    "cnn": "CNN autoencoder",
    "vit_cnn": "ViT + CNN decoder",
    "aae": "adversarial autoencoder",
    "vit_biharmonic": "ViT refining biharmonic",
    "pretrained_vit": "pretrained ViT",
    "biharmonic": "biharmonic",
    "mean_colour": "mean colour",
}
RECIPES = ("tuned", "long", "reference")
LOSS_ON = ("masked", "all")  # the patches the loss is taken on: the hidden ones or every one
LOSSES = ("mse", "psnr")  # the training losses: the MSE, or minus each image's PSNR

_TRANSFORMER = {
    "tuned": {"dropout": 0.0, "pos_init": "sincos"},
    "long": {"dropout": 0.0, "pos_init": "sincos"},
    "reference": {"dropout": 0.1, "pos_init": "random"},
}
# the CNN: tuned has no dropout and U-Net skip connections; reference is the seed's plain
# encoder-decoder with dropout 0.1
_CNN = {
    "tuned": {"dropout": 0.0, "skips": True},
    "long": {"dropout": 0.0, "skips": True},
    "reference": {"dropout": 0.1, "skips": False},
}
# builder keyword arguments per recipe and model name: the Transformers take a hidden patch as the
# mask token alone in every recipe; only vit_biharmonic starts from the harmonic fill
MODEL_SETTINGS = {
    recipe: {
        "vit": {**_TRANSFORMER[recipe], "fill": "token"},
        "mae": {**_TRANSFORMER[recipe], "fill": "token"},
        "cnn": dict(_CNN[recipe]),
        "vit_cnn": {**_TRANSFORMER[recipe], "fill": "token"},
        "aae": dict(_CNN[recipe]),  # the CNN's encoder and decoder
        "vit_biharmonic": {**_TRANSFORMER[recipe], "fill": "harmonic"},
    }
    for recipe in RECIPES
}
# train() keyword arguments per recipe and model name
TRAIN_SETTINGS = {
    "tuned": {
        "vit": {"lr": 2e-3, "lr_schedule": "cosine", "augment": True, "loss_on": "masked"},
        # the MAE's decoder learns where each hidden patch is only slowly from the hidden
        # patches' loss alone; the loss on every patch teaches it the positions from the first
        # steps
        "mae": {"lr": 2e-3, "lr_schedule": "cosine", "augment": True, "loss_on": "all"},
        "cnn": {"lr": 3e-3, "lr_schedule": "cosine", "augment": True, "loss_on": "masked"},
        "vit_cnn": {"lr": 2e-3, "lr_schedule": "cosine", "augment": True, "loss_on": "masked"},
        "aae": {"lr": 3e-3, "lr_schedule": "cosine", "augment": True, "loss_on": "masked"},
        "vit_biharmonic": {
            "lr": 2e-3,
            "lr_schedule": "cosine",
            "augment": True,
            "loss_on": "masked",
        },
        # the new layers at the mask-token ViT's rate; a fine-tuned backbone at a tenth of it
        # (PretrainedViT's backbone_lr_scale)
        "pretrained_vit": {
            "lr": 2e-3,
            "lr_schedule": "cosine",
            "augment": True,
            "loss_on": "masked",
        },  # fmt: skip
    },
    "reference": {
        name: {"lr": 1e-3, "lr_schedule": "plateau", "augment": False, "loss_on": "masked"}
        for name in BUILDERS
    },
}


# the mask-token ViT learns faster on minus each image's PSNR than on the MSE (docs/benchmarks.md)
for _name in ("vit", "vit_biharmonic"):
    TRAIN_SETTINGS["tuned"][_name]["loss"] = "psnr"
# long: tuned, with minus each image's PSNR as the CNN's loss too
TRAIN_SETTINGS["long"] = {
    name: {**settings, **({"loss": "psnr"} if name == "cnn" else {})}
    for name, settings in TRAIN_SETTINGS["tuned"].items()
}


def learns(predictor) -> bool:
    """Whether ``predictor`` learns: a predictor object says so (``learned``: the Keras models do,
    the classical fills do not); of names and saved models' paths, all but :data:`NON_LEARNED`."""
    if isinstance(predictor, str):
        return predictor not in NON_LEARNED
    return getattr(predictor, "learned", True)  # a foreign Keras model learns


def min_hidden_bound(name: str) -> bool:
    """Whether ``name`` is built for masks hiding at least ``min_mask_ratio`` of them (the MAE)."""
    return name == "mae"


def is_vit(name: str) -> bool:
    """Whether the model ``name`` is a ViT: a Transformer encoder and a per-patch head."""
    return name in ("vit", "vit_biharmonic", "mae")


def check_recipe(recipe) -> str:
    return check_choice(recipe, "recipe", RECIPES)


def model_settings(recipe: str, name: str) -> dict:
    """Builder keyword arguments of ``recipe`` for the model ``name`` (``vit``, ``mae``,
    ``cnn``)."""
    return dict(MODEL_SETTINGS[check_recipe(recipe)].get(name, {}))


def train_settings(recipe: str, name: str) -> dict:
    """``lr``, ``lr_schedule``, ``augment``, ``loss_on`` and, where the recipe sets it, ``loss`` of
    ``recipe`` for the model ``name``."""
    return dict(TRAIN_SETTINGS[check_recipe(recipe)][name])


def resolve(
    recipe: str,
    name: str,
    *,
    pos_init: str | None = None,
    dropout: float | None = None,
    lr: float | None = None,
    lr_schedule: str | None = None,
    augment: bool | None = None,
    loss_on: str | None = None,
    fill: str | None = None,
) -> tuple[dict, dict]:
    """``(builder kwargs, train kwargs)`` of ``recipe`` for ``name``, with the notebooks' overrides.

    Args:
        recipe: ``"tuned"``, ``"long"`` or ``"reference"``.
        name: a learned predictor of :data:`LEARNED`.
        pos_init, dropout, lr, lr_schedule, augment, loss_on, fill: overrides; ``None`` keeps the
            recipe's setting. ``pos_init`` (``"random"`` or ``"sincos"``) and ``fill``
            (``"token"`` or ``"harmonic"``, :func:`helpers.models.build_vit`) reach the models
            whose recipe has that setting; ``dropout`` (in [0, 1)) every model; ``lr`` (> 0),
            ``lr_schedule`` (``"plateau"`` or ``"cosine"``), ``augment`` (random flips) and
            ``loss_on`` (``"masked"`` or ``"all"``) the training.
    """
    model, train = model_settings(recipe, name), train_settings(recipe, name)
    # an override is always checked, and reaches the models whose recipe has that setting
    for key, value, allowed in (
        ("pos_init", pos_init, ("random", "sincos")),
        ("fill", fill, VIT_FILLS),
    ):
        if value is not None:
            check_choice(value, key, allowed)
            if key in model:
                model[key] = value
    if dropout is not None:
        model["dropout"] = check_fraction(dropout, "dropout")
    if lr is not None:
        train["lr"] = check_positive_number(lr, "lr")
    if lr_schedule is not None:
        train["lr_schedule"] = check_choice(lr_schedule, "lr_schedule", ("plateau", "cosine"))
    if augment is not None:
        train["augment"] = bool(check_choice(augment, "augment", (True, False)))
    if loss_on is not None:
        train["loss_on"] = check_choice(loss_on, "loss_on", LOSS_ON)
    return model, train


def label(name: str, fill: str | None = None) -> str:
    """What the predictor ``name`` is called in tables and figures; a Transformer given
    ``fill="harmonic"`` is called what it is, a refinement of the classical fill."""
    text = LABELS.get(name, name)
    if fill == "harmonic" and name != "vit_biharmonic":
        text += " refining biharmonic"
    return text
