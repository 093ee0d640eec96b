"""Training recipes: the settings that decide how well a model learns in a given budget.

``tuned`` (the default of the builders, ``train``, the notebooks and the sweep) is what the quality
benchmark measured best for short CPU budgets (the notebooks' minutes); ``long`` (the default of
``bench quality``, and ``--recipe long`` anywhere) is what it measured best for 30 minutes of CPU
training per model; ``reference`` is the seed design, one parameter away for comparison (notebook
03 trains both ``tuned`` and ``reference``).

| setting | ``tuned`` | ``reference`` |
|---|---|---|
| mask-token ViT and ViT + CNN decoder: a hidden patch enters as | the harmonic fill of the
visible pixels plus the mask token; the head predicts a correction | the mask token alone; the
head predicts the pixels |
| MAE-style ViT: the decoder's hidden positions get | the mask token plus the harmonic fill's
patch; the head predicts a correction | the mask token alone; the head predicts the pixels |
| Transformer position embeddings start from | the 2-D sine-cosine table (still learned) | small
random values |
| dropout in the Transformer blocks and the CNN | 0 | 0.1 |
| CNN autoencoder | U-Net skip connections (each encoder stage's input joins the decoder) | plain
encoder-decoder |
| learning rate (Adam) | peak 2e-3 (Transformers), 3e-3 (CNN), linear warm-up then cosine decay |
1e-3, halved on plateaus |
| horizontal flips | yes | no |

``long`` is ``tuned`` with two changes, both measured at 30 minutes on the shared CIFAR-10 subset
(README "Quality"): the mask-token ViT (and, by analogy, not measured, the MAE's decoder) takes a
hidden patch as the mask token alone
(``fill="token"``: +0.29 / +0.19 / +0.27 dB over the harmonic fill at 50 % random / rows / columns,
with as many epochs; the fill is worth +2.6 to +3.5 dB in the notebooks' few epochs, so ``tuned``
keeps it), and the mask-token ViT and the CNN train on minus each image's PSNR
(``loss="psnr"``, :class:`helpers.training.NegativePSNR`) instead of the MSE (ViT +0.28 / +0.16 /
+0.18 dB, CNN +0.15 / +0.07 / +0.10; chosen on a split of the training batches, ViT +0.22 / +0.23 /
+0.19, CNN +0.12 / +0.09 / +0.09). The other models keep ``tuned``'s settings (not measured).

Why (6-minute runs of the mask-token ViT on the shared CIFAR-10 subset, masked-region PSNR at 50 %
random/rows/columns, README "Quality"): reference 15.66/14.90/15.50 dB; dropout 0 15.69/14.95/15.50;
plus the sine-cosine start 17.14/15.84/16.62; plus peak lr 2e-3 17.53/16.17/16.85. The models
underfit in such budgets (training loss above validation loss), so regularisation does not help
and a start that already knows which patches are neighbours does.

The CNN (6 epochs on the embedded sample's training crops, mixed strategies, masked-region PSNR
at 50 % random/rows/columns on 500 sample test images, 2026-11-30): dropout 0.1, lr 1e-3 (the seed)
22.84/22.63/22.32 dB, within 0.5 dB of the mean-colour guess (22.37/22.18/22.17); dropout 0
23.96/23.23/23.09; plus lr 3e-3 24.55/23.74/23.59; plus skip connections 25.01/24.13/23.98.
"""

from __future__ import annotations

from ._checks import check_choice

LEARNED = (
    "vit",
    "mae",
    "cnn",
    "vit_cnn",
    "aae",
)  # the Keras models of helpers.models, by their builder's name
# built around a downloaded backbone (helpers.pretrained), so not in the sweep's LEARNED
PRETRAINED = ("pretrained_vit",)
BUILDERS = (*LEARNED, *PRETRAINED)  # every name build_model takes
NON_LEARNED = ("biharmonic", "mean_colour")
PREDICTORS = (*LEARNED, *NON_LEARNED)
VIT_FILLS = ("harmonic", "token")  # how a hidden patch enters the mask-token ViT: build_vit
RECIPES = ("tuned", "long", "reference")

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
# builder keyword arguments per recipe and model name
# the mask-token ViT: tuned starts hidden patches from the harmonic fill, long and reference from
# the mask token alone; the ViT + CNN decoder keeps tuned's fill in long (not measured there)
_VIT_FILL = {"tuned": "harmonic", "long": "token", "reference": "token"}
_VIT_CNN_FILL = {"tuned": "harmonic", "long": "harmonic", "reference": "token"}
# the MAE-style ViT's decoder: the harmonic fill in tuned; the mask token alone in the seed design
# and in long, as the mask-token ViT (not measured for the MAE at 30 minutes: the MAE with the mask
# token alone was the best model of the 30-minute table, README "Quality")
_MAE_FILL = {"tuned": "harmonic", "long": "token", "reference": "token"}
MODEL_SETTINGS = {
    recipe: {
        "vit": {**_TRANSFORMER[recipe], "fill": _VIT_FILL[recipe]},
        "mae": {**_TRANSFORMER[recipe], "fill": _MAE_FILL[recipe]},
        "cnn": dict(_CNN[recipe]),
        "vit_cnn": {**_TRANSFORMER[recipe], "fill": _VIT_CNN_FILL[recipe]},
        "aae": dict(_CNN[recipe]),  # the CNN's encoder and decoder
    }
    for recipe in RECIPES
}
# train() keyword arguments per recipe and model name
TRAIN_SETTINGS = {
    "tuned": {
        "vit": {"lr": 2e-3, "lr_schedule": "cosine", "augment": True, "loss_on": "masked"},
        # without the harmonic fill the MAE's decoder learns where each hidden patch is only
        # slowly from the masked patches' loss alone (it stays at the mean-colour guess for
        # minutes); the loss on every patch teaches it the positions from the first steps. With
        # the fill both losses score the same in notebook 03's budget (27.63 / 26.53 / 25.97 dB
        # on every patch, 27.61 / 26.52 / 25.97 on the hidden ones, 2026-12-06)
        "mae": {"lr": 2e-3, "lr_schedule": "cosine", "augment": True, "loss_on": "all"},
        "cnn": {"lr": 3e-3, "lr_schedule": "cosine", "augment": True, "loss_on": "masked"},
        "vit_cnn": {"lr": 2e-3, "lr_schedule": "cosine", "augment": True, "loss_on": "masked"},
        "aae": {"lr": 3e-3, "lr_schedule": "cosine", "augment": True, "loss_on": "masked"},
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


# long: tuned, with minus each image's PSNR as the loss of the two models it was measured on
_PSNR_LOSS = ("vit", "cnn")
TRAIN_SETTINGS["long"] = {
    name: {**settings, **({"loss": "psnr"} if name in _PSNR_LOSS else {})}
    for name, settings in TRAIN_SETTINGS["tuned"].items()
}


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
    pos_init: str = "",
    dropout: float = -1.0,
    lr: float = 0.0,
    lr_schedule: str = "",
    augment: str = "",
    loss_on: str = "",
    fill: str = "",
) -> tuple[dict, dict]:
    """``(builder kwargs, train kwargs)`` of ``recipe`` for ``name``, with the notebooks' overrides.

    An override left at its "unset" value keeps the recipe's setting: ``pos_init=""``,
    ``dropout < 0``, ``lr <= 0``, ``lr_schedule=""``, ``augment=""`` (else ``"yes"`` or ``"no"``),
    ``loss_on=""`` (else ``"masked"``: the hidden patches, or ``"all"``: every patch).
    ``pos_init`` and ``dropout`` apply to the Transformers only (``dropout`` also to the CNN);
    ``fill`` (``"harmonic"`` or ``"token"``, :func:`helpers.models.build_vit`) to the two
    Transformers and the ViT + CNN decoder.
    """
    model, train = model_settings(recipe, name), train_settings(recipe, name)
    # an override is always checked, and reaches the models whose recipe has that setting
    overrides = (("pos_init", pos_init, ("random", "sincos")), ("fill", fill, VIT_FILLS))
    for key, value, allowed in overrides:
        if value:
            check_choice(value, key, allowed)
            if key in model:
                model[key] = value
    if dropout is not None and dropout >= 0:
        model["dropout"] = float(dropout)
    if lr and lr > 0:
        train["lr"] = float(lr)
    if lr_schedule:
        train["lr_schedule"] = check_choice(lr_schedule, "lr_schedule", ("plateau", "cosine"))
    if augment:
        train["augment"] = check_choice(augment, "augment", ("yes", "no")) == "yes"
    if loss_on:
        from .training import LOSS_ON

        train["loss_on"] = check_choice(loss_on, "loss_on", LOSS_ON)
    return model, train
