"""Training recipes: ``tuned`` (the default), ``long`` (``tuned`` with the CNN on minus the PSNR,
for half an hour and more) and ``reference`` (the seed design, kept for comparison)."""

from __future__ import annotations

from ._checks import check_choice, check_fraction, check_positive_number

LEARNED = ("vit", "mae", "cnn", "vit_cnn", "aae", "vit_biharmonic")  # the models of helpers.models
PRETRAINED = ("pretrained_vit",)  # built around a downloaded backbone (helpers.pretrained)
BUILDERS = (*LEARNED, *PRETRAINED)  # every name build_model takes
NON_LEARNED = ("biharmonic", "mean_colour")
PREDICTORS = (*LEARNED, *NON_LEARNED)
VIT_FILLS = ("harmonic", "token")  # how a hidden patch enters the mask-token ViT: build_vit
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
LR_SCHEDULES = ("plateau", "cosine")
LOSS_ON = ("masked", "all")  # the patches the loss is taken on: the hidden ones or every one
LOSSES = ("mse", "psnr")  # the training losses: the MSE, or minus each image's PSNR


def learns(predictor) -> bool:
    """Whether ``predictor`` learns: its ``learned`` flag; a name or path not in NON_LEARNED."""
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
    """Builder keyword arguments of ``recipe`` for the model ``name``."""
    ref = check_recipe(recipe) == "reference"
    dropout = 0.1 if ref else 0.0
    if name in ("vit", "mae", "vit_cnn", "vit_biharmonic"):
        fill = "harmonic" if name == "vit_biharmonic" else "token"
        return {"dropout": dropout, "pos_init": "random" if ref else "sincos", "fill": fill}
    # tuned: U-Net skip connections; aae: the CNN's encoder and decoder
    return {"dropout": dropout, "skips": not ref} if name in ("cnn", "aae") else {}


def train_settings(recipe: str, name: str) -> dict:
    """``lr``, ``lr_schedule``, ``augment``, ``loss_on`` (and ``loss``, if set) of ``recipe``."""
    check_recipe(recipe)
    if name not in BUILDERS:
        raise KeyError(name)
    if recipe == "reference":
        return {"lr": 1e-3, "lr_schedule": "plateau", "augment": False, "loss_on": "masked"}
    # pretrained_vit: the new layers' rate (the backbone's: PretrainedViT's backbone_lr_scale);
    # the MAE's decoder learns where each hidden patch is sooner from the loss on every patch
    settings = {"lr": 3e-3 if name in ("cnn", "aae") else 2e-3, "lr_schedule": "cosine"}
    settings.update(augment=True, loss_on="all" if name == "mae" else "masked")
    # the mask-token ViT learns faster on minus each image's PSNR than on the MSE
    if name in ("vit", "vit_biharmonic") or (recipe == "long" and name == "cnn"):
        settings["loss"] = "psnr"
    return settings


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
        pos_init, dropout, lr, lr_schedule, augment, loss_on, fill: overrides, always checked;
            ``None`` keeps the recipe's setting. ``pos_init`` (``"random"``, ``"sincos"``) and
            ``fill`` (:data:`VIT_FILLS`) reach only the models whose recipe has that setting.
    """
    model, train = model_settings(recipe, name), train_settings(recipe, name)
    for settings, key, value, check, *allowed in (
        (model, "pos_init", pos_init, check_choice, ("random", "sincos")),
        (model, "fill", fill, check_choice, VIT_FILLS),
        (model, "dropout", dropout, check_fraction),
        (train, "lr", lr, check_positive_number),
        (train, "lr_schedule", lr_schedule, check_choice, LR_SCHEDULES),
        (train, "augment", augment, check_choice, (True, False)),
        (train, "loss_on", loss_on, check_choice, LOSS_ON),
    ):
        if value is not None:
            value = check(value, key, *allowed)
            if key in settings or key == "dropout":  # pos_init, fill: only where the recipe has it
                settings[key] = bool(value) if key == "augment" else value
    return model, train


def label(name: str, fill: str | None = None) -> str:
    """What ``name`` is called in tables and figures (``fill="harmonic"``: refining biharmonic)."""
    text = LABELS.get(name, name)
    if fill == "harmonic" and name != "vit_biharmonic":
        text += " refining biharmonic"
    return text
