import csv
import json

import numpy as np
import pytest
from _refused import refused

from helpers.data import load_dataset
from helpers.recipes import LEARNED
from helpers.tools import experiments

TINY = {
    "vit": {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32},
    "mae": {
        "embed_dim": 16,
        "depth": 1,
        "num_heads": 2,
        "mlp_dim": 32,
        "decoder_dim": 16,
        "decoder_depth": 1,
        "decoder_num_heads": 2,
        "decoder_mlp_dim": 16,
    },
    "cnn": {"filters": (8, 16)},
}


@pytest.fixture(scope="module")
def tiny_data():
    return load_dataset("sample", n_train=48, n_test=8, val_fraction=0.25, seed=0)


def _config(**kw):
    base = dict(
        strategies=("random", "importance"),
        ratios=(0.5,),
        predictors=("vit", "biharmonic"),
        epochs=1,
        batch_size=16,
        model_kwargs=TINY,
        plan="per_strategy",
    )
    base.update(kw)
    return experiments.SweepConfig(**base)


@pytest.mark.slow
def test_sweep_writes_rows_provenance_and_models(tiny_data, tmp_path):
    run = experiments.Run(tmp_path / "run")
    rows = experiments.run_sweep(
        tiny_data, _config(), run, extra_provenance={"profile": "test"}, progress=False
    )
    assert [(r["strategy"], r["predictor"]) for r in rows] == [
        ("random", "vit"),
        ("random", "biharmonic"),
        ("importance", "vit"),
        ("importance", "biharmonic"),
    ]
    for r in rows:
        assert r["n_test"] == 8 and r["ratio"] == 0.5 and r["plan"] == "per_strategy"
        assert 0 < r["psnr_masked_mean"] < 100 and -1 <= r["ssim_mean"] <= 1
        # what training added: the learned model's untrained twin on the cell's masks
        if r["predictor"] == "vit":
            assert r["training_added"] == pytest.approx(
                r["psnr_masked_mean"] - r["psnr_masked_untrained"], abs=1e-5
            )
        else:  # not learned: no twin (an empty cell of metrics.csv)
            assert r.get("training_added") in (None, "")
            assert r.get("psnr_masked_untrained") in (None, "")
    prov = json.loads((run.path / "provenance.json").read_text())
    assert prov["dataset"]["name"] == "sample" and prov["dataset"]["test"] == 8
    assert prov["profile"] == "test" and prov["config"]["epochs"] == 1
    assert prov["environment"]["backend"] and prov["environment"]["device"]
    assert set(prov["cells"]) == {
        "vit/random/0.50",
        "biharmonic/random/0.50",
        "vit/importance/0.50",
        "biharmonic/importance/0.50",
    }
    assert all(c["seconds"] >= 0 for c in prov["cells"].values())
    assert (run.models / "vit-random-0.30to0.70" / "final.keras").exists()
    assert (run.models / "vit-importance-0.30to0.70" / "final.keras").exists()
    assert not list(run.path.glob(".*"))  # no temporary files left behind


def test_non_learned_predictors_are_never_trained(tiny_data, tmp_path, monkeypatch):
    from helpers import models, training

    def no_training(*args, **kwargs):
        raise AssertionError("a non-learned predictor must not be trained")

    monkeypatch.setattr(training, "train", no_training)
    monkeypatch.setattr(models, "build_model", no_training)
    run = experiments.Run(tmp_path / "run")
    config = _config(strategies=("rows",), predictors=("biharmonic", "mean_colour"))
    predictor = experiments.predictor_for(tiny_data, config, run, "mean_colour", "rows", 0.5)
    assert isinstance(predictor, models.MeanColourInpainter)
    rows = experiments.run_sweep(tiny_data, config, run, progress=False)
    assert [r["predictor"] for r in rows] == ["biharmonic", "mean_colour"]
    assert all(0 < r["psnr_masked_mean"] < 100 for r in rows)
    assert not run.models.exists() or not any(run.models.iterdir())


def test_every_predictor_sees_the_same_masks(tiny_data, tmp_path):
    config = _config(strategies=("rows",))
    run = experiments.Run(tmp_path / "r")
    a = experiments.eval_masks(tiny_data, config, run, "rows", 0.5)
    b = experiments.eval_masks(tiny_data, config, experiments.Run(tmp_path / "r2"), "rows", 0.5)
    assert np.array_equal(a, b) and (a.sum(1) == 32).all()
    assert not np.array_equal(a, experiments.eval_masks(tiny_data, config, run, "rows", 0.7))


def test_interrupted_sweep_resumes_and_skips_done_cells(tiny_data, tmp_path, monkeypatch):
    run = experiments.Run(tmp_path / "run")
    config = _config(strategies=("random", "columns"), predictors=("biharmonic",))
    calls = []
    real = experiments.evaluate_cell

    def crash_on_second(dataset, config, run, strategy, *args, **kwargs):
        calls.append(strategy)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(dataset, config, run, strategy, *args, **kwargs)

    monkeypatch.setattr(experiments, "evaluate_cell", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        experiments.run_sweep(tiny_data, config, run, progress=False)
    assert [r["strategy"] for r in run.rows()] == ["random"]
    # the CSV is complete and parseable after the crash
    with open(run.metrics_path) as f:
        assert len(list(csv.DictReader(f))) == 1
    monkeypatch.setattr(experiments, "evaluate_cell", real)
    calls.clear()
    rows = experiments.run_sweep(tiny_data, config, run, progress=False)
    assert [r["strategy"] for r in rows] == ["random", "columns"]


@pytest.mark.slow
def test_trained_models_are_reused_on_resume(tiny_data, tmp_path, monkeypatch):
    run = experiments.Run(tmp_path / "run")
    config = _config(strategies=("random",), ratios=(0.3, 0.5), predictors=("vit",))
    experiments.run_sweep(tiny_data, config, run, progress=False)
    import helpers.training

    def no_training(*a, **k):
        raise AssertionError("a finished model was trained again")

    monkeypatch.setattr(helpers.training, "train", no_training)
    (run.path / "metrics.csv").unlink()
    fresh = experiments.Run(run.path)  # nothing loaded yet: the saved models are read
    rows = experiments.run_sweep(tiny_data, config, fresh, progress=False)
    assert len(rows) == 2


@pytest.mark.slow
def test_per_cell_plan_trains_one_model_per_ratio(tiny_data, tmp_path):
    run = experiments.Run(tmp_path / "run")
    config = _config(
        strategies=("random",), ratios=(0.3, 0.7), predictors=("mae",), plan="per_cell"
    )
    rows = experiments.run_sweep(tiny_data, config, run, progress=False)
    assert len(rows) == 2 and all(r["plan"] == "per_cell" for r in rows)
    assert sorted(p.name for p in run.models.iterdir()) == ["mae-random-0.30", "mae-random-0.70"]


@pytest.mark.slow
def test_cross_strategy_matrix(tiny_data, tmp_path):
    run = experiments.Run(tmp_path / "run")
    config = _config(strategies=("random", "rows"), predictors=("vit",))
    table = experiments.run_matrix(tiny_data, config, run, ratio=0.5, progress=False)
    assert table.shape == (2, 2) and np.isfinite(table).all()
    rows = run.matrix_rows()
    assert {(r["train_strategy"], r["eval_strategy"]) for r in rows} == {
        ("random", "random"),
        ("random", "rows"),
        ("rows", "random"),
        ("rows", "rows"),
    }
    # the diagonal equals the sweep's own cell for the same model and masks
    sweep_rows = experiments.run_sweep(tiny_data, config, run, progress=False)
    same = [r for r in sweep_rows if r["strategy"] == "rows"][0]
    assert table[1, 1] == pytest.approx(same["psnr_masked_mean"])


def test_run_folder_defaults_to_results(monkeypatch, tmp_path):
    monkeypatch.setenv("HELPERS_RESULTS_DIR", str(tmp_path))
    assert experiments.Run("quick").path == tmp_path / "quick"


def test_append_row_adds_columns_and_keeps_rows(tmp_path):
    path = tmp_path / "m.csv"
    experiments.append_row(path, {"a": 1, "b": "x"})
    experiments.append_row(path, {"a": 2, "c": 3.5})
    assert experiments.read_csv(path) == [
        {"a": 1.0, "b": "x", "c": ""},
        {"a": 2.0, "b": "", "c": 3.5},
    ]


@pytest.mark.parametrize(
    "kw, param, value",
    [
        ({"strategies": ("diagonal",)}, "strategies", "diagonal"),
        ({"ratios": (0.5, 1.0)}, "ratios", 1.0),
        ({"predictors": ("resnet",)}, "predictors", "resnet"),
        ({"plan": "each"}, "plan", "each"),
        ({"ratio_range": (0.7, 0.3)}, "ratio_range", (0.7, 0.3)),
        ({"epochs": 0}, "epochs", 0),
        ({"precision": "half"}, "precision", "half"),
        ({"devices": 0}, "devices", 0),
        ({"probe_epochs": -1}, "probe_epochs", -1),
    ],
)
def test_bad_config_is_rejected(kw, param, value):
    with refused(param, value):
        _config(**kw)


def test_a_run_folder_refuses_results_of_other_settings(tiny_data, tmp_path):
    run = experiments.Run(tmp_path / "run")
    config = _config(strategies=("rows",), predictors=("biharmonic",))
    experiments.run_sweep(tiny_data, config, run, progress=False)
    experiments.run_sweep(tiny_data, config, run, progress=False)  # same settings: fine
    with refused("run", str(run.path), problem="(differs in config.epochs)"):
        experiments.run_sweep(
            tiny_data,
            _config(strategies=("rows",), predictors=("biharmonic",), epochs=2),
            run,
            progress=False,
        )
    # the same images in gray: another experiment
    from dataclasses import replace

    from helpers.data import to_gray

    gray = replace(
        tiny_data, **{k: to_gray(getattr(tiny_data, k)) for k in ("x_train", "x_val", "x_test")}
    )
    with refused("run", str(run.path), problem="differs in dataset.image_shape"):
        experiments.run_sweep(gray, config, run, progress=False)
    # sizes of predictors it does not run (a model added to MODEL_SIZES later) do not matter
    wider = _config(
        strategies=("rows",), predictors=("biharmonic",), model_kwargs={**TINY, "x": {}}
    )
    experiments.run_sweep(tiny_data, wider, run, progress=False)
    sizes = {**TINY, "vit": {**TINY["vit"], "depth": 2}}
    vit_run = experiments.Run(tmp_path / "vit")
    with refused("run", str(vit_run.path), problem="differs in config.model_kwargs"):
        experiments.record_start(tiny_data, _config(predictors=("vit",)), vit_run)
        experiments.run_sweep(
            tiny_data, _config(predictors=("vit",), model_kwargs=sizes), vit_run, progress=False
        )
    rows = dict(strategies=("rows",), predictors=("biharmonic",))
    experiments.run_sweep(tiny_data, _config(**rows, devices=2), run, progress=False)  # same
    with refused("run", str(run.path), problem="differs in config.precision"):
        experiments.run_sweep(tiny_data, _config(**rows, precision="mixed_bfloat16"), run)
    provenance = json.loads((run.path / "provenance.json").read_text())
    del provenance["config"]["precision"], provenance["config"]["devices"]  # an older run
    (run.path / "provenance.json").write_text(json.dumps(provenance))
    experiments.run_sweep(tiny_data, config, run, progress=False)  # missing: the defaults
    other = load_dataset("sample", n_train=48, n_test=4, val_fraction=0.25, seed=0)
    with refused("run", str(run.path), problem="dataset.test"):
        experiments.run_sweep(other, config, run, progress=False)


def test_model_sizes():
    small = experiments.model_sizes("small")
    assert set(small) == set(LEARNED) and small["vit"]["embed_dim"] == 64
    assert small["vit_biharmonic"] == small["vit"]
    assert experiments.model_sizes("reference") == {name: {} for name in LEARNED}
    small["vit"]["embed_dim"] = 1
    assert experiments.model_sizes("small")["vit"]["embed_dim"] == 64  # a copy
    with refused("model_size", "huge"):
        experiments.model_sizes("huge")


@pytest.mark.slow
def test_mixed_plan_trains_one_model_per_predictor_for_every_cell(tiny_data, tmp_path):
    run = experiments.Run(tmp_path / "run")
    config = _config(plan="mixed", strategies=("rows", "importance"))
    vit = experiments.predictor_for(tiny_data, config, run, "vit", "rows", 0.5)
    assert experiments.predictor_for(tiny_data, config, run, "vit", "importance", 0.5) is vit
    rows = experiments.run_sweep(tiny_data, config, run, progress=False)
    assert {r["plan"] for r in rows} == {"mixed"} and len(rows) == 4
    assert [p.name for p in run.models.iterdir()] == ["vit-mixed-0.30to0.70"]
    prov = run.provenance()["training"]["vit-mixed-0.30to0.70"]
    assert (
        prov["epochs"] == 1
        and prov["images_seen"] == len(tiny_data.x_train)
        and prov["recipe"] == "tuned"
    )
    with refused("plan", "mixed"):
        experiments.run_matrix(tiny_data, config, run, 0.5)


def test_pretrained_models_are_used_instead_of_training(tiny_data, tmp_path, monkeypatch):
    from helpers import models, training

    model = models.build_model("vit", **TINY["vit"])
    path = training.save_atomic(model, tmp_path / "saved" / "best.keras")
    monkeypatch.setattr(
        training, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained"))
    )
    rows = experiments.run_sweep(
        tiny_data,
        _config(plan="mixed", strategies=("rows",)),
        tmp_path / "run",
        pretrained={"vit": path},
        progress=False,
    )
    assert [r["predictor"] for r in rows] == ["vit", "biharmonic"]
    assert experiments.Run(tmp_path / "run").provenance()["pretrained"] == {"vit": str(path)}
    (record,) = experiments.Run(tmp_path / "run").provenance()["training"].values()
    assert record == {
        "predictor": "vit",
        "pretrained": str(path),
        "epochs": None,
        "images_seen": None,
    }  # no history
    (path.parent / training.HISTORY).write_text("epoch,images_seen,loss\n0,40.0,0.1\n1,80.0,0.05\n")
    assert experiments.pretrained_training(path, "vit") == {
        "predictor": "vit",
        "pretrained": str(path),
        "epochs": 2,
        "images_seen": 80,
    }
    with refused("plan", _config().plan, problem="pretrained models need plan 'mixed'"):
        experiments.run_sweep(tiny_data, _config(), tmp_path / "r2", pretrained={"vit": path})
    with pytest.raises(FileNotFoundError) as info:
        experiments.run_sweep(
            tiny_data,
            _config(plan="mixed"),
            tmp_path / "r3",
            pretrained={"vit": tmp_path / "nope.keras"},
        )
    assert info.value.filename == str(tmp_path / "nope.keras") and "['vit']" in info.value.strerror


def test_one_cell_by_hand_matches_the_sweep(tiny_data, tmp_path):
    from helpers.tools.evaluation import score_predictor

    config = _config(strategies=("columns",), predictors=("biharmonic",))
    run = experiments.Run(tmp_path / "run")
    predictor = experiments.predictor_for(tiny_data, config, run, "biharmonic", "columns", 0.5)
    mask = experiments.eval_masks(tiny_data, config, run, "columns", 0.5)
    summary, _ = score_predictor(predictor, tiny_data.x_test, mask)
    row = experiments.evaluate_cell(tiny_data, config, run, "columns", 0.5, "biharmonic")
    assert row["psnr_masked_mean"] == pytest.approx(summary["psnr_masked_mean"], abs=1e-6)
    experiments.record_cell(run, row, seconds=1.5)
    (written,) = experiments.run_sweep(tiny_data, config, run, progress=False)  # nothing to do
    assert written["psnr_masked_mean"] == pytest.approx(row["psnr_masked_mean"])
    assert run.provenance()["cells"]["biharmonic/columns/0.50"]["seconds"] == 1.5


@pytest.mark.slow
def test_the_sweep_probes_each_trained_encoder_once(tiny_data, tmp_path, monkeypatch):
    from helpers.tools import probe

    run = experiments.Run(tmp_path / "run")
    config = _config(
        strategies=("random", "rows"), ratios=(0.3, 0.7), plan="per_cell", probe_epochs=2
    )
    rows = experiments.run_sweep(tiny_data, config, run, progress=False)
    learned = [r for r in rows if r["predictor"] == "vit"]
    assert len(learned) == 4
    for r in learned:  # the probe's metrics beside the PSNR, each in [0, 1] (kappa in [-1, 1])
        assert 0 <= float(r["probe_accuracy"]) <= 1 and 0 <= float(r["probe_macro_f1"]) <= 1
        assert -1 <= float(r["probe_kappa"]) <= 1
    assert all(r.get("probe_accuracy") in (None, "") for r in rows if r["predictor"] != "vit")
    probed = {r["model"]: r for r in run.probe_rows()}
    models = {
        experiments.cell_model(config, "vit", r["strategy"], float(r["ratio"])) for r in learned
    }
    assert set(probed) == {"pixels", "vit-random"} | models  # one row per encoder + the baselines
    assert probed["pixels"]["features"] == "pixels" and float(probed["pixels"]["dim"]) == 3072
    assert probed["vit-random"]["features"] == "random_encoder"
    for r in learned:  # the row holds the probe of its own model
        key = experiments.cell_model(config, "vit", r["strategy"], float(r["ratio"]))
        assert float(r["probe_accuracy"]) == float(probed[key]["accuracy"])
    prov = run.provenance()["probe"]
    assert prov["epochs"] == 2 and prov["n_train"] == 48 and prov["n_test"] == 8

    # a second evaluation of a probed model reads probe.csv: no probe is trained again
    monkeypatch.setattr(probe, "score_features", lambda *a, **k: pytest.fail("probed twice"))
    model = experiments.predictor_for(tiny_data, config, run, "vit", "rows", 0.7)
    again = experiments.probe_model(tiny_data, config, run, "vit", model, "vit-rows-0.70")
    assert again["accuracy"] == float(probed["vit-rows-0.70"]["accuracy"])


@pytest.mark.slow
def test_a_mixed_sweep_probes_its_one_model_per_predictor(tiny_data, tmp_path):
    run = experiments.Run(tmp_path / "run")
    config = _config(strategies=("random", "columns"), plan="mixed", probe_epochs=1)
    rows = experiments.run_sweep(tiny_data, config, run, progress=False)
    accuracies = {r["probe_accuracy"] for r in rows if r["predictor"] == "vit"}
    assert len(accuracies) == 1  # every cell is answered by the same encoder
    assert [r["model"] for r in run.probe_rows()] == [
        "pixels",
        "vit-random",
        "vit-mixed-0.30to0.70",
    ]


def test_probing_needs_labels_of_two_classes(tiny_data, tmp_path):
    import dataclasses

    one_class = dataclasses.replace(
        tiny_data, y_train=np.zeros_like(tiny_data.y_train), y_val=np.zeros_like(tiny_data.y_val)
    )
    config = _config(strategies=("random",), predictors=("vit",), probe_epochs=1)
    with refused("dataset", "sample"):
        experiments.run_sweep(one_class, config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was trained or written
