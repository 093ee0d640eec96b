import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from _refused import refused

from helpers import plots
from helpers.tools import report


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
    assert lines[0] == "| strategy | ratio | mask-token ViT | CNN autoencoder | biharmonic |"
    assert lines[2] == "| random | 30% | **21.00** | 20.00 | 17.00 |"
    assert lines[5] == "| rows | 70% | 14.00 | **30.00** | 10.00 |"


def test_findings_are_computed_from_the_numbers():
    rows = _rows()
    text = " ".join(report.findings(rows))
    assert "mask-token ViT has the best masked-region PSNR in 3 of 4" in text
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
        "Hiding 70% instead of 30% of the patches costs 4.00 dB for mask-token ViT and 3.00 dB "
        "for "
        "biharmonic (masked-region PSNR, mean over strategies)."
    )


def test_the_mean_colour_guess_is_no_contender_in_wins_and_averages():
    text = " ".join(report.findings(_rows_with_a_flat_cnn()))
    # the flagged CNN is no contender either: no conclusion is drawn from it
    assert (
        "mask-token ViT has the best masked-region PSNR in 4 of 4 (strategy, ratio) cells; "
        "biharmonic 0 (CNN autoencoder: flagged above)." in text
    )
    # at 30%: random (21 + 17.75) / 2 = 19.375, rows (18 + 14.75) / 2 = 16.375, without the guess
    # and the flagged CNN
    assert (
        "At 30%, rows masking is the hardest (16.38 dB averaged over predictors) and random the "
        "easiest (19.38 dB)." in text
    )
    assert "mean colour" not in text


def _with_twins(rows, added):
    """``rows`` with ``training_added`` for the learned predictors: predictor -> dB."""
    return [
        {**r, "training_added": added[r["predictor"]]} if r["predictor"] in added else r
        for r in rows
    ]


def test_findings_start_from_what_training_added():
    rows = _with_twins(_rows_with_a_flat_cnn(), {"vit": 12.5, "cnn": 3.0})
    lines = report.findings(rows)
    assert lines[0].startswith("Training added, over each learned model's untrained twin")
    assert "mask-token ViT +12.50 to +12.50 dB; CNN autoencoder +3.00 to +3.00 dB." in lines[0]
    assert report.learned_little(rows) == {}


def test_a_model_that_training_barely_changed_is_flagged_and_left_out():
    # the ViT starts from a fill: it beats biharmonic, but training added 0.2 dB
    rows = _with_twins(_rows_with_a_flat_cnn(), {"vit": 0.2, "cnn": 3.0})
    assert report.learned_little(rows) == {"vit": (4, 4)}
    lines = report.findings(rows)
    assert lines[1] == (
        "Warning: training added less than 1 dB to the mask-token ViT over its untrained twin "
        "in 4 of 4 cells: what it scores is what it started from, not what it learned; no "
        "conclusion is drawn from it."
    )
    text = " ".join(lines)
    assert "The mask-token ViT beats biharmonic" not in text
    assert "(mask-token ViT, CNN autoencoder: flagged above)" in text
    # without the column (older results) nothing is flagged for it
    assert report.learned_little(_rows_with_a_flat_cnn()) == {}


def test_no_warning_without_mean_colour_results():
    assert report.learned_nothing(_rows()) == {}
    assert not any(line.startswith("Warning") for line in report.findings(_rows()))


def test_matrix_findings():
    m = np.array([[20.0, 12.0], [15.0, 18.0]])
    text = " ".join(report.findings(_rows(), m, ["random", "rows"]))
    assert "scores 19.00 dB on average, against 13.50 dB on other masks" in text
    assert "trained on random, evaluated on rows: 12.00 dB, 6.00 dB below" in text


def test_best_predictor_needs_results():
    with refused("strategy", "columns"):
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


def _probe_rows(accuracy):
    """Sweep rows of a probed mae (accuracy[(strategy, ratio)], PSNR 30 - 10 * ratio) and a
    biharmonic row without a probe, as metrics.csv gives them back (strings)."""
    rows = []
    for (s, r), acc in accuracy.items():
        rows.append(
            {
                "strategy": s,
                "ratio": str(r),
                "predictor": "mae",
                "psnr_masked_mean": str(30 - 10 * r),
                "probe_accuracy": str(acc),
                "probe_kappa": str(acc - 0.1),
            }
        )
        rows.append(
            {
                "strategy": s,
                "ratio": str(r),
                "predictor": "biharmonic",
                "psnr_masked_mean": "40",
                "probe_accuracy": "",
                "probe_kappa": "",
            }
        )
    return rows


BASELINES = [
    {"model": "pixels", "predictor": "", "features": "pixels", "accuracy": "0.5"},
    {"model": "mae-random", "predictor": "mae", "features": "random_encoder", "accuracy": "0.6"},
    {"model": "vit-random", "predictor": "vit", "features": "random_encoder", "accuracy": "0.9"},
]


def test_probe_table_and_findings():
    # higher ratios teach more here, and reconstruct worse
    accuracy = {
        ("random", 0.3): 0.55,
        ("random", 0.7): 0.75,
        ("rows", 0.3): 0.58,
        ("rows", 0.7): 0.8,
    }
    rows = _probe_rows(accuracy)
    assert [c["strategy"] for c in report.probe_cells(rows, "mae")] == ["random"] * 2 + ["rows"] * 2
    assert report.probe_baselines(BASELINES, "mae") == {"pixels": 0.5, "random_encoder": 0.6}
    table = report.probe_table(rows, "mae").splitlines()
    assert table[0] == "| trained on | 30% | 70% |"
    assert table[2] == "| random | 0.550 (27.00 dB) | 0.750 (23.00 dB) |"
    assert table[3] == "| rows | 0.580 (27.00 dB) | **0.800** (23.00 dB) |"
    rows[0]["training_added"] = "14.5"  # rows of a sweep that scored the untrained twins
    table = report.probe_table(rows, "mae").splitlines()
    assert table[2] == "| random | 0.550 (27.00 dB, training added +14.50 dB) | 0.750 (23.00 dB) |"
    text = " ".join(report.probe_findings(rows, BASELINES, "mae", n_test=1000))
    assert "best features was trained on rows masks at 70% (probe accuracy 0.800)" in text
    assert "worst on random masks at 30% (0.550)" in text
    assert "training strategy that teaches most is rows (0.690)" in text
    assert "training ratio that teaches most is 70% (0.775)" in text
    assert "2 of 4 encoders beat the probe on the same encoder with random weights (0.600)" in text
    assert "4 of 4 encoders beat the probe on raw pixels (0.500)" in text
    # 4 encoders: no ordering of 4 is rare enough for a rank correlation to say anything
    assert "4 encoders are too few to say whether better reconstruction went with" in text
    assert "Spearman" not in text
    se = np.sqrt(0.67 * 0.33 / 1000)
    assert f"standard error of {se:.3f}" in text


def _ratio_cells(*accuracy):
    """One random-mask encoder per ratio 0.1, 0.2, ...: PSNR falls with the ratio (_probe_rows)."""
    return {("random", round(0.1 * (i + 1), 1)): a for i, a in enumerate(accuracy)}


@pytest.mark.parametrize(
    "accuracy, verdict",
    [
        # PSNR and accuracy in the same order: rho = +1, exact p = 2 / 5! = 0.017
        (
            _ratio_cells(0.8, 0.75, 0.7, 0.65, 0.6),
            "better reconstruction went with better features",
        ),
        (_ratio_cells(0.6, 0.65, 0.7, 0.75, 0.8), "better reconstruction went with worse features"),
        # rho = +0.9, yet 10 of the 120 orderings of 5 reach |rho| >= 0.9: p = 0.083
        (_ratio_cells(0.7, 0.8, 0.65, 0.6, 0.55), "did not tell"),
        (_ratio_cells(0.6, 0.8, 0.5, 0.7, 0.65), "did not tell"),
    ],
)
def test_probe_findings_say_what_the_correlation_says(accuracy, verdict):
    text = " ".join(report.probe_findings(_probe_rows(accuracy), [], "mae"))
    assert verdict in text
    assert "Across the 5 models" in text
    assert "strategy that teaches most" not in text  # one strategy: nothing to compare
    assert "standard error" not in text and "baseline" not in text


def test_probe_findings_of_one_ratio_compare_the_strategies_alone():
    rows = _probe_rows({("random", 0.5): 0.7, ("rows", 0.5): 0.72, ("columns", 0.5): 0.75})
    text = report.probe_findings(rows, [], "mae")
    assert "The training strategy that teaches most is columns (0.750), the one that teaches " in (
        " ".join(text)
    )
    assert not any("Averaged" in t or "training ratio that" in t for t in text)
    assert "3 encoders are too few to say whether" in text[-1]


def test_probe_findings_of_equal_encoders():
    rows = _probe_rows({("random", 0.3): 0.5, ("random", 0.7): 0.5, ("rows", 0.3): 0.5})
    text = report.probe_findings(rows, [], "mae")
    assert text == ["All 3 MAE-style ViT encoders have the same probe accuracy (0.500)."]


def test_probe_report_without_probe_results_is_an_error():
    rows = _probe_rows({("random", 0.5): 0.7})
    with refused("predictor", "vit"):
        report.probe_table(rows, "vit")
    with refused("predictor", "vit"):
        report.probe_findings(rows, BASELINES, "vit")


def test_spearman():
    assert report.spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert report.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(report.spearman([1, 2, 3], [5, 5, 5]))  # constant: undefined


def test_spearman_test_gives_the_permutation_p_value():
    rho, p = report.spearman_test([1, 2, 3, 4, 5], [10, 20, 30, 40, 50])
    assert rho == pytest.approx(1.0) and p == pytest.approx(2 / 120)  # 2 of the 5! orderings
    rho, p = report.spearman_test([1, 2, 3, 4, 5], [2, 1, 3, 4, 5])
    assert rho == pytest.approx(0.9) and p == pytest.approx(0.0833, abs=1e-3)
    # 9 values: 20,000 random pairings, the same with the same seed
    x, y = np.arange(9), [1, 0, 3, 2, 5, 4, 7, 6, 8]
    rho, p = report.spearman_test(x, y)
    assert rho == pytest.approx(1 - 6 * 8 / 720) and 0 < p < 0.01
    assert report.spearman_test(x, y) == (rho, p)
    assert np.isnan(report.spearman_test([1, 2, 3], [5, 5, 5])[1])


def test_plot_probe_vs_psnr():
    cells = report.probe_cells(_probe_rows({("random", 0.3): 0.55, ("rows", 0.7): 0.8}), "mae")
    fig = plots.plot_probe_vs_psnr(cells, {"pixels": 0.5}, chance=0.2, title="t")
    ax = fig.axes[0]
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    assert sorted(map(tuple, points)) == [(23.0, 0.8), (27.0, 0.55)]
    assert sorted(line.get_ydata()[0] for line in ax.lines) == [0.2, 0.5]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["random", "rows", "30%", "70%"]
    plt.close(fig)
    with refused("cells", []):
        plots.plot_probe_vs_psnr([])


def test_a_table_of_what_training_added():
    rows = _with_twins(_rows_with_a_flat_cnn(), {"vit": 12.5, "cnn": 0.25})
    table = report.results_table(rows, "training_added").splitlines()
    assert table[0] == "| strategy | ratio | mask-token ViT | CNN autoencoder |"
    assert table[2] == "| random | 30% | +12.50 | +0.25 |" and "**" not in "".join(table)
