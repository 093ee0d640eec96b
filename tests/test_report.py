import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from helpers import plots, report


def _rows():
    # psnr = base(predictor) - 10 * ratio - penalty(strategy)
    base = {"vit": 24.0, "cnn": 23.0, "biharmonic": 20.0}
    penalty = {"random": 0.0, "rows": 3.0}
    rows = []
    for s in penalty:
        for r in (0.3, 0.7):
            for p in base:
                v = base[p] - 10 * r - penalty[s]
                if p == "cnn" and s == "rows" and r == 0.7:
                    v = 30.0  # the CNN wins one cell
                rows.append(
                    {
                        "strategy": s,
                        "ratio": r,
                        "predictor": p,
                        "psnr_masked_mean": v,
                        "psnr_masked_std": 1.0,
                        "ssim_mean": 0.5,
                        "ssim_std": 0.1,
                    }
                )
    return rows


def test_best_predictor_and_table_highlight():
    rows = _rows()
    assert report.best_predictor(rows, "random", 0.3) == "vit"
    assert report.best_predictor(rows, "rows", 0.7) == "cnn"
    table = report.results_table(rows)
    lines = table.splitlines()
    assert lines[0] == "| strategy | ratio | ViT (mask token) | CNN autoencoder | biharmonic |"
    assert lines[2] == "| random | 30% | **21.00** | 20.00 | 17.00 |"
    assert lines[5] == "| rows | 70% | 14.00 | **30.00** | 10.00 |"


def test_findings_are_computed_from_the_numbers():
    rows = _rows()
    text = " ".join(report.findings(rows))
    assert "ViT (mask token) has the best masked-region PSNR in 3 of 4" in text
    assert "CNN autoencoder 1" in text
    assert "At 30%, rows masking is the hardest" in text
    assert (
        "The mask-token ViT beats biharmonic inpainting in 4 of 4 cells (mean margin +4.00 dB)"
        in text
    )
    assert "Against the CNN autoencoder the mask-token ViT wins 3 of 4 cells" in text


def _rows_with_a_flat_cnn():
    """The CNN sits 0.5 dB above the mean-colour guess in 3 of 4 cells (2 dB in random at 30%) and
    barely drops."""
    penalty = {"random": 0.0, "rows": 3.0}
    rows = []
    for s in penalty:
        for r in (0.3, 0.7):
            floor = 14.0 - 2 * r - penalty[s]
            values = {
                "vit": 24.0 - 10 * r - penalty[s],
                "cnn": floor + (2.0 if (s, r) == ("random", 0.3) else 0.5),
                "biharmonic": 20.0 - 7.5 * r - penalty[s],
                "mean_colour": floor,
            }
            rows += [
                {"strategy": s, "ratio": r, "predictor": p, "psnr_masked_mean": v}
                for p, v in values.items()
            ]
    return rows


def test_a_learned_model_near_the_mean_colour_guess_is_flagged_first():
    rows = _rows_with_a_flat_cnn()
    assert report.learned_nothing(rows) == {"cnn": (3, 4)}
    lines = report.findings(rows)
    assert lines[0] == (
        "Warning: the CNN autoencoder is within 1 dB of the mean-colour guess (or below it) in 3 "
        "of 4 "
        "cells: it has not learned to use the visible patches; conclusions about it are not "
        "meaningful."
    )
    assert sum(line.startswith("Warning") for line in lines) == 1


def test_a_flagged_model_is_not_called_robust_to_the_ratio():
    # the flat CNN drops least (1.55 dB) but is flagged; the mean-colour guess (1.60 dB) is no
    # contender
    (cost,) = [
        line for line in report.findings(_rows_with_a_flat_cnn()) if line.startswith("Hiding")
    ]
    assert cost == (
        "Hiding 70% instead of 30% of the patches costs 4.00 dB for ViT (mask token) and 3.00 dB "
        "for "
        "biharmonic (masked-region PSNR, mean over strategies)."
    )


def test_the_mean_colour_guess_is_no_contender_in_wins_and_averages():
    text = " ".join(report.findings(_rows_with_a_flat_cnn()))
    assert (
        "ViT (mask token) has the best masked-region PSNR in 4 of 4 (strategy, ratio) cells; CNN "
        "autoencoder 0, biharmonic 0." in text
    )
    # at 30%: random (21 + 15.4 + 17.75) / 3 = 18.05, rows (18 + 10.9 + 14.75) / 3 = 14.55, without
    # the guess
    assert (
        "At 30%, rows masking is the hardest (14.55 dB averaged over predictors) and random the "
        "easiest (18.05 dB)." in text
    )
    assert "mean colour" not in text


def test_no_warning_without_mean_colour_results():
    assert report.learned_nothing(_rows()) == {}
    assert not any(line.startswith("Warning") for line in report.findings(_rows()))


def test_matrix_findings():
    m = np.array([[20.0, 12.0], [15.0, 18.0]])
    text = " ".join(report.findings(_rows(), m, ["random", "rows"]))
    assert "scores 19.00 dB on average, against 13.50 dB on other masks" in text
    assert "trained on random, evaluated on rows: 12.00 dB, 6.00 dB below" in text


def test_best_predictor_needs_results():
    with pytest.raises(ValueError, match="no results for strategy 'columns'"):
        report.best_predictor(_rows(), "columns", 0.5)


def test_limits_sentence():
    prov = {
        "dataset": {"name": "sample", "source": "embedded", "train": 10, "val": 2, "test": 5},
        "config": {"epochs": 3, "plan": "per_strategy", "batch_size": 8, "seed": 0},
        "environment": {"keras": "3", "backend": "tensorflow", "device": "CPU"},
        "profile": "smoke",
    }
    s = report.limits(prov)
    assert "10 training, 2 validation and 5 test images; 3 epochs" in s and "Profile: smoke" in s
    # models reused from notebooks 03 and 04: their own budgets, not the sweep's epochs setting
    prov = {
        **prov,
        "pretrained": {"vit": "a/best.keras", "cnn": "b/best.keras"},
        "training": {
            "vit-mixed-0.30to0.70": {"predictor": "vit", "epochs": 8, "images_seen": 36000},
            "cnn-mixed-0.30to0.70": {"predictor": "cnn", "epochs": 6, "images_seen": 27000},
        },
    }
    s = report.limits(prov)
    assert (
        "models trained cnn 6 epochs, 27,000 images seen; vit 8 epochs, 36,000 images seen, plan"
        in s
    )
    assert "3 epochs" not in s


def test_result_plots():
    rows = _rows()
    fig = plots.plot_metric_vs_ratio(rows, "psnr_masked")
    assert (
        len(fig.axes) == 2 and len(fig.axes[0].containers) == 3
    )  # one error-bar line per predictor
    plt.close(fig)
    fig = plots.plot_matrix(np.array([[20.0, 12.0], [15.0, np.nan]]), ["random", "rows"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["20.0", "12.0", "15.0"]
    plt.close(fig)
