"""Tables and findings of the report notebook from the rows of a sweep (``metrics.csv``)."""

from __future__ import annotations

import numpy as np

from .._checks import SettingError
from ..recipes import LABELS, learns

NAMES = LABELS
HIGHER_IS_BETTER = dict.fromkeys(("psnr_masked_mean", "psnr_mean", "ssim_mean"), True)
HIGHER_IS_BETTER["mse_masked_mean"] = False
FLOOR = "mean_colour"  # what a model that learned nothing scores
FLOOR_MARGIN_DB = 1.0  # masked-region PSNR a learned model must gain over FLOOR in every cell
TRAINING_MARGIN_DB = 1.0  # ... and over its untrained twin (``training_added``)


def _unique(rows, key: str) -> list:
    """The values of ``key`` in ``rows`` in order of appearance (``ratio``: sorted floats)."""
    if key == "ratio":
        return sorted({float(r["ratio"]) for r in rows})
    return list(dict.fromkeys(r[key] for r in rows))


def _value(rows, strategy, ratio, predictor, metric="psnr_masked_mean"):
    for r in rows:
        if r["strategy"] == strategy and float(r["ratio"]) == ratio and r["predictor"] == predictor:
            return float(r[metric])
    return float("nan")


def _margins(rows, strategies, ratios, a, b, metric="psnr_masked_mean") -> np.ndarray:
    """``metric`` of predictor ``a`` minus that of ``b`` in every (strategy, ratio) cell."""
    cells = [(s, r) for s in strategies for r in ratios]
    return np.array([_value(rows, *c, a, metric) - _value(rows, *c, b, metric) for c in cells])


def best_predictor(rows, strategy: str, ratio: float, metric: str = "psnr_masked_mean") -> str:
    """The predictor with the best ``metric`` in a cell."""
    values = {p: _value(rows, strategy, ratio, p, metric) for p in _unique(rows, "predictor")}
    values = {p: v for p, v in values.items() if np.isfinite(v)}
    if not values:
        raise SettingError("strategy", strategy, f"has no results at ratio {ratio} in these rows")
    pick = max if HIGHER_IS_BETTER.get(metric, True) else min
    return pick(values, key=values.get)


def results_table(
    rows, metric: str = "psnr_masked_mean", digits: int = 2, names: dict | None = None
) -> str:
    """A (strategy, ratio) x predictor Markdown table, best in bold (training_added: signed)."""
    nm = {**NAMES, **(names or {})}
    added = metric == "training_added"
    predictors = _unique(rows, "predictor")
    if added:
        predictors = [p for p in predictors if learns(p)]
        rows = [{**r, metric: _training_added(r)} for r in rows if r["predictor"] in predictors]
    head = "| strategy | ratio | " + " | ".join(nm.get(p, p) for p in predictors) + " |"
    lines = [head, "|" + "---|" * (len(predictors) + 2)]
    for s in _unique(rows, "strategy"):
        for ratio in _unique(rows, "ratio"):
            best = None if added else best_predictor(rows, s, ratio, metric)
            cells = []
            for p in predictors:
                v = _value(rows, s, ratio, p, metric)
                text = "–" if not np.isfinite(v) else f"{v:{'+' if added else ''}.{digits}f}"
                cells.append(f"**{text}**" if p == best else text)
            lines.append(f"| {s} | {ratio:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def win_counts(rows, metric: str = "psnr_masked_mean") -> dict[str, int]:
    """How many (strategy, ratio) cells each predictor wins."""
    counts = {p: 0 for p in _unique(rows, "predictor")}
    for s in _unique(rows, "strategy"):
        for ratio in _unique(rows, "ratio"):
            counts[best_predictor(rows, s, ratio, metric)] += 1
    return counts


def _below(gains: dict, margin: float) -> dict[str, tuple[int, int]]:
    """Predictor -> (cells under ``margin``, cells) for the predictors with such cells."""
    return {p: (int(np.sum(g < margin)), len(g)) for p, g in gains.items() if np.any(g < margin)}


def learned_nothing(rows, margin: float = FLOOR_MARGIN_DB) -> dict[str, tuple[int, int]]:
    """Learned predictor -> (cells within ``margin`` dB of :data:`FLOOR`, cells with both)."""
    if FLOOR not in _unique(rows, "predictor"):
        return {}
    cells = (_unique(rows, "strategy"), _unique(rows, "ratio"))
    gains = {p: _margins(rows, *cells, p, FLOOR) for p in _unique(rows, "predictor") if learns(p)}
    return _below({p: g[np.isfinite(g)] for p, g in gains.items()}, margin)


def learned_little(rows, margin: float = TRAINING_MARGIN_DB) -> dict[str, tuple[int, int]]:
    """Learned predictor -> (cells where training added under ``margin`` dB, cells with a twin)."""
    return _below(_added_by_predictor(rows), margin)


def _training_added(row) -> float:
    value = row.get("training_added")
    return float("nan") if value in (None, "") else float(value)


def _added_by_predictor(rows) -> dict[str, np.ndarray]:
    """Learned predictor -> what training added in each of its cells that has a twin (dB)."""
    out = {}
    for p in (p for p in _unique(rows, "predictor") if learns(p)):
        added = np.array([_training_added(r) for r in rows if r["predictor"] == p])
        if np.isfinite(added).any():
            out[p] = added[np.isfinite(added)]
    return out


def training_added(rows, names: dict | None = None) -> str:
    """One sentence: the range over the cells of what training added to each learned predictor."""
    nm = {**NAMES, **(names or {})}
    parts = []
    for p, added in _added_by_predictor(rows).items():
        span = f"{added.min():+.2f}" + (f" to {added.max():+.2f}" if len(added) > 1 else "")
        parts.append(f"{nm.get(p, p)} {span} dB")
    intro = (
        "Training added, over each learned model's untrained twin (the same architecture and "
        "seed with its initial weights) on the same masks, in masked-region PSNR over the cells: "
    )
    return intro + "; ".join(parts) + "." if parts else ""


def findings(
    rows, matrix=None, matrix_strategies=None, metric: str = "psnr_masked_mean",
    names: dict | None = None,
) -> list[str]:  # fmt: skip
    """Sentences on what the numbers say; predictors that learned little or nothing are left out."""
    nm = {**NAMES, **(names or {})}
    little, nothing = learned_little(rows), learned_nothing(rows)
    flagged = {**nothing, **little}
    out = [s for s in [training_added(rows, names)] if s]
    out += [
        f"Warning: training added less than {TRAINING_MARGIN_DB:g} dB to the {nm.get(p, p)} "
        f"over its untrained twin in {bad} of {n} cells: what it scores is what it started from, "
        "not what it learned; no conclusion is drawn from it."
        for p, (bad, n) in little.items()
    ]
    out += [
        f"Warning: the {nm.get(p, p)} is within {FLOOR_MARGIN_DB:g} dB of the mean-colour guess "
        f"(or below it) in {bad} of {n} cells: it has not learned to use the visible patches; "
        "conclusions about it are not meaningful."
        for p, (bad, n) in nothing.items()
    ]
    base = [r for r in rows if r["predictor"] != FLOOR] or rows
    contenders = [r for r in base if r["predictor"] not in flagged] or base
    left_out = [p for p in _unique(base, "predictor") if p not in _unique(contenders, "predictor")]
    strategies, ratios = _unique(contenders, "strategy"), _unique(contenders, "ratio")
    predictors = _unique(contenders, "predictor")
    n_cells = len(strategies) * len(ratios)
    wins = win_counts(contenders, metric)
    leader = max(wins, key=wins.get)
    others = [f"{nm.get(p, p)} {n}" for p, n in wins.items() if p != leader]
    out.append(
        f"{nm.get(leader, leader)} has the best masked-region PSNR in {wins[leader]} of "
        f"{n_cells} (strategy, ratio) cells"
        + (f"; {', '.join(others)}" if others else "")
        + (f" ({', '.join(nm.get(p, p) for p in left_out)}: flagged above)." if left_out else ".")
    )
    robust = [p for p in predictors if p not in flagged]
    if len(ratios) > 1 and robust:  # what hiding the most patches costs, most and least
        lo, hi = ratios[0], ratios[-1]
        at = {
            r: np.array([[_value(rows, s, r, p, metric) for s in strategies] for p in robust])
            for r in (lo, hi)
        }
        drops = dict(zip(robust, np.nanmean(at[lo] - at[hi], axis=1)))
        most, least = max(drops, key=drops.get), min(drops, key=drops.get)
        costs = f"{drops[most]:.2f} dB for {nm.get(most, most)}"
        if least != most:
            costs += f" and {drops[least]:.2f} dB for {nm.get(least, least)}"
        out.append(
            f"Hiding {hi:.0%} instead of {lo:.0%} of the patches costs {costs} (masked-region "
            "PSNR, mean over strategies)."
        )
    for ratio in ratios:
        means = _strategy_means(rows, ratio, strategies, predictors, metric)
        hardest, easiest = min(means, key=means.get), max(means, key=means.get)
        if hardest != easiest:
            out.append(
                f"At {ratio:.0%}, {hardest} masking is the hardest ({means[hardest]:.2f} dB "
                f"averaged over predictors) and {easiest} the easiest ({means[easiest]:.2f} dB)."
            )
    for other, sentence in (
        ("biharmonic", "The {vit} beats biharmonic inpainting in {} of {} cells"),
        ("cnn", "Against the {cnn} the {vit} wins {} of {} cells"),
    ):
        if "vit" in predictors and other in predictors and not {"vit", other} & set(flagged):
            margins = _margins(rows, strategies, ratios, "vit", other, metric)
            out.append(
                sentence.format(int(np.sum(margins > 0)), n_cells, vit=nm["vit"], cnn=nm["cnn"])
                + f" (mean margin {np.nanmean(margins):+.2f} dB)."
            )
    if matrix is not None and matrix_strategies and np.isfinite(np.asarray(matrix, float)).all():
        m = np.asarray(matrix, dtype=float)  # its mean on own masks, on others; the worst pair
        diag = float(np.mean(np.diag(m)))
        off = float(np.mean(m[~np.eye(len(m), dtype=bool)]))
        loss = np.diag(m)[None, :] - m  # how much worse than the model trained on the eval strategy
        np.fill_diagonal(loss, -np.inf)
        i, j = np.unravel_index(np.argmax(loss), loss.shape)
        a, b = matrix_strategies[i], matrix_strategies[j]
        out.append(
            "Across strategies, a ViT evaluated on the masks it was trained on scores "
            f"{diag:.2f} dB on average, against {off:.2f} dB on other masks; the worst transfer is "
            f"trained on {a}, evaluated on {b}: {m[i, j]:.2f} dB, "
            f"{loss[i, j]:.2f} dB below the model trained on {b}."
        )
    return out


def _strategy_means(rows, ratio, strategies, predictors, metric="psnr_masked_mean") -> dict:
    """Strategy -> ``metric`` at ``ratio`` averaged over ``predictors``."""
    return {
        s: np.nanmean([_value(rows, s, ratio, p, metric) for p in predictors]) for s in strategies
    }


def answer_key(rows, ratio: float = 0.7, names: dict | None = None) -> list[str]:
    """The numbers behind notebook 06's written question, at the ratio nearest ``ratio``."""
    nm = {**NAMES, **(names or {})}
    ratios = _unique(rows, "ratio")
    if not ratios:
        raise SettingError("rows", len(rows), "no sweep rows: run notebook 05 first")
    ratio = min(ratios, key=lambda r: abs(r - ratio))
    strategies = _unique(rows, "strategy")
    learned = [p for p in _unique(rows, "predictor") if learns(p)]
    out = []
    if learned:
        mean = _strategy_means(rows, ratio, strategies, learned)
        per = "; ".join(
            f"{nm.get(p, p)}: "
            + ", ".join(f"{s} {_value(rows, s, ratio, p):.2f}" for s in strategies)
            for p in learned
        )
        out.append(
            f"(a) At {ratio:.0%} the hardest strategy for the learned models is "
            f"{min(mean, key=mean.get)} ({min(mean.values()):.2f} dB averaged over them), the "
            f"easiest {max(mean, key=mean.get)} ({max(mean.values()):.2f} dB); per model (dB): "
            f"{per}."
        )
    if {"vit", "biharmonic"} <= set(_unique(rows, "predictor")):
        margins = _margins(rows, strategies, ratios, "vit", "biharmonic")
        added = _added_by_predictor(rows).get("vit")  # None, or at least one value
        twin = "; training added {:+.2f} to {:+.2f} dB over its untrained twin."
        out.append(
            f"(c) The {nm['vit']} beats biharmonic inpainting in {int(np.sum(margins > 0))} "
            f"of {len(margins)} cells (mean margin {np.nanmean(margins):+.2f} dB)"
            + (twin.format(added.min(), added.max()) if added is not None else ".")
        )
    return out


def limits(provenance: dict) -> str:
    """One sentence on what the run was: dataset, sizes, epochs, plan, backend and device."""
    ds, cfg, env = (provenance.get(k, {}) for k in ("dataset", "config", "environment"))
    budget = f"{cfg.get('epochs')} epochs per model"
    if provenance.get("pretrained") and provenance.get("training"):  # their own budgets
        parts = []
        for key, t in sorted(provenance["training"].items()):
            seen = f", {t['images_seen']:,} images seen" if t.get("images_seen") else ""
            where = ""
            if t.get("checkpoint"):
                where = f" (the course checkpoint: {t['minutes']:g} min on the CIFAR-10 subset)"
            parts.append(f"{t.get('predictor') or key}{where} {t.get('epochs')} epochs{seen}")
        budget = "models trained " + "; ".join(parts)
    return (
        f"Dataset {ds.get('name')} ({ds.get('source')}): {ds.get('train')} training, "
        f"{ds.get('val')} validation and {ds.get('test')} test images; {budget}, plan "
        f"{cfg.get('plan')}, batch size {cfg.get('batch_size')}, seed {cfg.get('seed')}; Keras "
        f"{env.get('keras')} on {env.get('backend')} ({env.get('device')}). Profile: "
        f"{provenance.get('profile', 'not recorded')}."
    )


PROBE_BASELINES = {"random_encoder": "the same encoder with random weights", "pixels": "raw pixels"}
SIGNIFICANCE = 0.05  # permutation p-value under which Spearman's rho (PSNR, accuracy) is clear
MIN_CORRELATION_CELLS = 5  # below it no ordering reaches SIGNIFICANCE (4 cells: p >= 1/12)


def probe_cells(rows, predictor: str) -> list[dict]:
    """The sweep rows of ``predictor`` that hold a probe result, with floats for the numbers."""
    return [
        {
            "strategy": r["strategy"],
            "ratio": float(r["ratio"]),
            "psnr": float(r["psnr_masked_mean"]),
            "accuracy": float(r["probe_accuracy"]),
            "kappa": float(r["probe_kappa"]),
            "training_added": _training_added(r),
        }
        for r in rows
        if r["predictor"] == predictor and r.get("probe_accuracy") not in (None, "")
    ]


def probe_baselines(probe_rows, predictor: str) -> dict[str, float]:
    """Baseline -> accuracy in ``probe.csv``: ``pixels`` and ``predictor``'s ``random_encoder``."""
    return {
        r["features"]: float(r["accuracy"])
        for r in probe_rows
        if r["features"] == "pixels"
        or (r["features"] == "random_encoder" and r["predictor"] == predictor)
    }


def probe_table(rows, predictor: str, digits: int = 3) -> str:
    """A Markdown table (training strategy x ratio) of probe accuracy, PSNR and training added."""
    cells = probe_cells(rows, predictor)
    if not cells:
        raise SettingError("predictor", predictor, "has no probe results in these rows")
    ratios = sorted({c["ratio"] for c in cells})
    best = max(c["accuracy"] for c in cells)
    head = "| trained on | " + " | ".join(f"{r:.0%}" for r in ratios) + " |"
    lines = [head, "|" + "---|" * (len(ratios) + 1)]
    for s in dict.fromkeys(c["strategy"] for c in cells):
        texts = []
        for ratio in ratios:
            c = next((c for c in cells if c["strategy"] == s and c["ratio"] == ratio), None)
            if c is None:
                texts.append("–")
                continue
            acc = f"{c['accuracy']:.{digits}f}"
            acc = f"**{acc}**" if c["accuracy"] == best else acc
            added = c["training_added"]
            added = "" if np.isnan(added) else f", training added {added:+.2f} dB"
            texts.append(f"{acc} ({c['psnr']:.2f} dB{added})")
        lines.append(f"| {s} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def spearman(x, y) -> float:
    """Spearman's rank correlation (scipy.stats.spearmanr); NaN when either side is constant."""
    from scipy.stats import spearmanr  # lazy: slow to import

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def spearman_test(x, y, seed: int = 0) -> tuple[float, float]:
    """(rho, two-sided permutation p): exact up to 8 values, else 20,000 draws with ``seed``;
    (NaN, NaN) where :func:`spearman` is NaN."""
    from scipy.stats import permutation_test, rankdata  # lazy: slow to import

    rho = spearman(x, y)
    if not np.isfinite(rho):
        return rho, float("nan")
    ry = rankdata(np.asarray(y, float))
    ry = (ry - ry.mean()) / np.linalg.norm(ry - ry.mean())

    def statistic(values, axis):
        rx = rankdata(values, axis=axis)
        rx = rx - rx.mean(axis=axis, keepdims=True)
        return (rx * ry).sum(axis=axis) / np.linalg.norm(rx, axis=axis)

    exact = len(x) <= 8
    result = permutation_test(
        (np.asarray(x, float),),
        statistic,
        permutation_type="pairings",
        vectorized=True,
        n_resamples=np.inf if exact else 20_000,
        rng=None if exact else np.random.default_rng(seed),
    )
    return rho, float(result.pvalue)


def probe_findings(rows, probe_rows, predictor: str, n_test: int | None = None) -> list[str]:
    """Sentences on what the probe says of the encoders of ``predictor``; with ``n_test``, which
    differences are within the standard error of an accuracy, sqrt(p(1-p)/n)."""
    cells = probe_cells(rows, predictor)
    if not cells:
        raise SettingError("predictor", predictor, "has no probe results in these rows")
    name = NAMES.get(predictor, predictor)
    acc = np.array([c["accuracy"] for c in cells])
    best, worst = cells[int(np.argmax(acc))], cells[int(np.argmin(acc))]
    out = [f"All {len(cells)} {name} encoders have the same probe accuracy ({acc[0]:.3f})."]
    if best["accuracy"] != worst["accuracy"]:
        out = [
            f"The {name} encoder with the best features was trained on {best['strategy']} masks "
            f"at {best['ratio']:.0%} (probe accuracy {best['accuracy']:.3f}); the worst on "
            f"{worst['strategy']} masks at {worst['ratio']:.0%} ({worst['accuracy']:.3f})."
        ]
    # a mean per strategy is "averaged over the other axis" only where several ratios were probed
    both_axes = all(len({c[k] for c in cells}) > 1 for k in ("strategy", "ratio"))
    lead = "Averaged over the other axis, the" if both_axes else "The"
    for key, fmt in (("strategy", str), ("ratio", "{:.0%}".format)):
        groups = dict.fromkeys(c[key] for c in cells)
        means = {g: float(np.mean([c["accuracy"] for c in cells if c[key] == g])) for g in groups}
        top, low = max(means, key=means.get), min(means, key=means.get)
        if len(means) > 1 and means[top] != means[low]:
            out.append(
                f"{lead} training {key} that teaches most is {fmt(top)} ({means[top]:.3f}), the "
                f"one that teaches least {fmt(low)} ({means[low]:.3f})."
            )
    base = probe_baselines(probe_rows, predictor)
    out += [
        f"{int(np.sum(acc > base[k]))} of {len(cells)} encoders beat the probe on {label} "
        f"({base[k]:.3f})."
        for k, label in PROBE_BASELINES.items()
        if k in base
    ]
    rho, p_value = np.nan, np.nan  # did better reconstruction go with better features?
    if np.ptp(acc) > 0 and len(cells) < MIN_CORRELATION_CELLS:
        out.append(
            f"{len(cells)} encoders are too few to say whether better reconstruction went with "
            f"better features: a rank correlation needs at least {MIN_CORRELATION_CELLS} (probe "
            "more training ratios or strategies)."
        )
    elif np.ptp(acc) > 0:
        rho, p_value = spearman_test([c["psnr"] for c in cells], acc)
    if np.isfinite(rho):
        verdict = f"better reconstruction went with {'better' if rho > 0 else 'worse'} features"
        if p_value >= SIGNIFICANCE:
            verdict = "reconstruction quality did not tell which encoder has the better features"
        out.append(
            f"Across the {len(cells)} models, {verdict} (Spearman's rho between masked-region "
            f"PSNR and probe accuracy {rho:+.2f}, permutation p = {p_value:.2f})."
        )
    if n_test:
        p = float(np.mean(acc))
        se = float(np.sqrt(p * (1 - p) / n_test))
        out.append(
            f"On {n_test} test images an accuracy near {p:.2f} has a standard error of {se:.3f}: "
            f"differences below about {2 * se:.3f} are within the noise of the test set (and one "
            "seed per model adds its own)."
        )
    return out
