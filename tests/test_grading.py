"""python -m helpers grade: a fake class of submissions graded end to end, each model in its own
process; broken, malicious, oversized, too slow and too large ones get a row with the reason; every
model is also scored as its untrained twin (fresh weights), and only what training added earns the
learning points."""

import csv
import json
import pickle
import zipfile

import keras
import numpy as np
import pytest
from test_evaluation import write_cifar_folder

from helpers.models import (
    build_aae,
    build_cnn_autoencoder,
    build_mae,
    build_model,
    build_vit,
    build_vit_cnn,
)
from helpers.tools import grading
from helpers.tools.cli import main

pytestmark = pytest.mark.slow  # every test here starts processes or trains

TINY = dict(image_shape=(32, 32, 3), patch_size=4, seed=0)


def functional(output_layer):
    """A Keras model with the graded interface built from Keras' own layers only."""
    images = keras.Input((32, 32, 3), name="images")
    mask = keras.Input((64,), name="mask")
    return keras.Model({"images": images, "mask": mask}, output_layer(images))


def write_class(root):
    """One folder per student: what each one is, and how it must be graded."""
    for name in ("ada", "ben", "cy", "dee", "eve", "fay", "gil", "hal", "ivy"):
        (root / name).mkdir(parents=True)
    # ada: a constant 0.5, as weights (a Dense layer with kernel 0 and bias 0.5): on uniform noise,
    # better than both references; its untrained twin (random kernel, bias 0) gives about 0 where
    # the pixels are hidden, so "training" added several dB
    ada = functional(keras.layers.Dense(3, name="constant"))
    ada.get_layer("constant").set_weights([np.zeros((3, 3), "float32"), np.full(3, 0.5, "float32")])
    ada.save(root / "ada" / "model.keras")
    # ben: returns its input: the hidden pixels it is given are 0, never the originals; no weights,
    # so its twin is itself and training added nothing
    functional(keras.layers.Identity()).save(root / "ben" / "best.keras")
    # cy: a Lambda layer (Python code): refused by safe mode
    functional(keras.layers.Lambda(lambda t: t * 0.5)).save(root / "cy" / "model.keras")
    # dee: random bytes named model.keras
    (root / "dee" / "model.keras").write_bytes(np.random.default_rng(0).bytes(4000))
    # eve: takes the images only
    x = keras.Input((32, 32, 3), name="images")
    keras.Model(x, keras.layers.Dense(3)(x)).save(root / "eve" / "model.keras")
    # fay: an empty folder; gil: a notebook but no model
    (root / "gil" / "exercises.ipynb").write_text("{}")
    # hal: a config naming subprocess.Popen (would run a command if it were ever built)
    with zipfile.ZipFile(root / "hal" / "model.keras", "w") as z:
        config = {"module": "subprocess", "class_name": "Popen", "config": {"args": ["false"]}}
        z.writestr("config.json", json.dumps(config))
    # ivy: a zip bomb: small on disk, 3 MB unpacked (the limit is 2 MB in the test)
    with zipfile.ZipFile(root / "ivy" / "model.keras", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"\0" * (3 * 2**20))
    (root / "README.txt").write_text("a stray file")  # not a student folder
    (root / ".DS_Store").write_text("hidden: skipped")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("grading")
    data = write_cifar_folder(base / "hidden", n=24)
    write_class(base / "submissions")
    result = grading.grade(
        base / "submissions", data, base / "out", mask_seed=7, max_model_mb=2, progress=False
    )
    return base, result


def rows_by_name(result):
    return {r["student"]: r for r in result["rows"]}


def test_every_submission_gets_a_row_and_nothing_stops_the_others(graded):
    _, result = graded
    rows = rows_by_name(result)
    students = {"ada", "ben", "cy", "dee", "eve", "fay", "gil", "hal", "ivy", "README.txt"}
    assert set(rows) == students | set(grading.REFERENCES)
    assert [r["student"] for r in result["rows"] if r["status"] == "graded"][:2] == ["ada", "ben"]
    for name in students - {"ada", "ben"}:
        assert rows[name]["status"] == "not graded" and rows[name]["score"] == 0, name
        assert rows[name]["reason"], name


def test_reasons_name_what_is_wrong(graded):
    rows = rows_by_name(graded[1])
    assert "safe mode" in rows["cy"]["reason"] and "Lambda" in rows["cy"]["reason"]
    assert "not a Keras model file" in rows["dee"]["reason"]
    assert "wrong interface" in rows["eve"]["reason"] and "'mask'" in rows["eve"]["reason"]
    assert rows["fay"]["reason"] == rows["gil"]["reason"] == "no .keras file in the folder"
    assert "safe mode" in rows["hal"]["reason"] and "Popen" in rows["hal"]["reason"]
    assert "unpacks to 3.0 MB, more than the 2 MB allowed" in rows["ivy"]["reason"]
    assert "not a folder" in rows["README.txt"]["reason"]


def test_scores_follow_the_rubric(graded):
    rows = rows_by_name(graded[1])
    refs = {name: rows[name] for name in grading.REFERENCES}
    per = {column: points for column, points, _ in grading.RUBRIC}
    for s in grading.GRADED_STRATEGIES:
        psnr = {name: rows[name][f"{s}_psnr_masked"] for name in ("ada", "ben", *refs)}
        # uniform noise: 0.5 everywhere beats the visible mean colour, which beats biharmonic
        assert psnr["ada"] > psnr["mean_colour"] > psnr["biharmonic"], (s, psnr)
        # ben returns the 0s it was given where pixels are hidden: far below both references
        assert psnr["ben"] < 8 and psnr["ben"] < psnr["biharmonic"], (s, psnr)
        # ada's twin is far below it; ben, without weights, is its own twin
        assert rows["ada"][f"{s}_training_added"] >= grading.MIN_TRAINING_GAIN_DB + 1, (s, rows)
        assert rows["ben"][f"{s}_training_added"] == 0, (s, rows)
    assert rows["ada"]["score"] == rows["ada"]["max_score"] == 12
    assert rows["ben"]["score"] == 3 * per["runs"]
    assert all(rows[name]["score"] is None for name in grading.REFERENCES)


def test_the_untrained_twin_is_scored_and_training_added_is_the_difference(graded):
    rows = rows_by_name(graded[1])
    for s in grading.GRADED_STRATEGIES:
        for name in ("ada", "ben"):
            row = rows[name]
            twin = row[f"{s}_psnr_masked_untrained"]
            assert isinstance(twin, float) and np.isfinite(twin), (name, s)
            assert row[f"{s}_training_added"] == pytest.approx(
                row[f"{s}_psnr_masked"] - twin, abs=1e-3
            ), (name, s)
        assert rows["ben"][f"{s}_psnr_masked_untrained"] == rows["ben"][f"{s}_psnr_masked"]
        assert rows["ada"][f"{s}_psnr_masked_untrained"] < 8, s  # ~0 where hidden: as ben
        for name in grading.REFERENCES:  # they do not learn: no twin
            assert rows[name][f"{s}_psnr_masked_untrained"] is None, (name, s)
            assert rows[name][f"{s}_training_added"] is None, (name, s)


def test_the_files_say_the_same(graded):
    base, result = graded
    out = base / "out"
    with open(out / grading.GRADES_CSV, newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["student"] for r in table] == [r["student"] for r in result["rows"]]
    ada = next(r for r in table if r["student"] == "ada")
    ada_row = rows_by_name(result)["ada"]
    for column in ("random_psnr_masked", "random_psnr_masked_untrained", "random_training_added"):
        assert float(ada[column]) == pytest.approx(ada_row[column]), column
    assert ada["model"] == "ada/model.keras" and float(ada["seconds"]) > 0
    biharmonic = next(r for r in table if r["student"] == "biharmonic")
    assert biharmonic["random_psnr_masked_untrained"] == biharmonic["random_training_added"] == ""
    saved = json.loads((out / grading.GRADING_JSON).read_text())
    assert saved["settings"]["mask_seed"] == 7 and saved["settings"]["n_test"] == 24
    assert saved["settings"]["min_training_gain_db"] == grading.MIN_TRAINING_GAIN_DB == 1.0
    saved_ada = next(r for r in saved["rows"] if r["student"] == "ada")
    assert saved_ada["rows_training_added"] == ada_row["rows_training_added"]
    assert saved_ada["rows_psnr_masked_untrained"] == ada_row["rows_psnr_masked_untrained"]
    board = (out / grading.LEADERBOARD).read_text()
    assert board.index("| 1 | ada | 12 / 12 |") < board.index("| 2 | ben | 3 / 12 |")
    assert "*biharmonic*" in board and "## Not graded" in board and "12 points in all" in board
    twin, added = ada_row["columns_psnr_masked_untrained"], ada_row["columns_training_added"]
    assert f"| {twin:.2f} / {added:+.2f} |" in board and "untrained twin" in board
    assert (
        "- 2: training added at least 1 dB of masked-region PSNR over its untrained twin" in board
    )
    assert not list(out.glob(".*partial*"))


def test_the_same_mask_seed_gives_the_same_grades(graded, tmp_path):
    base, result = graded
    (tmp_path / "subs" / "ben").mkdir(parents=True)
    (tmp_path / "subs" / "ben" / "best.keras").write_bytes(
        (base / "submissions" / "ben" / "best.keras").read_bytes()
    )
    again = grading.grade(
        tmp_path / "subs", base / "hidden", tmp_path / "out", mask_seed=7, progress=False
    )
    before, now = rows_by_name(result)["ben"], rows_by_name(again)["ben"]
    for s in grading.GRADED_STRATEGIES:
        assert now[f"{s}_psnr_masked"] == before[f"{s}_psnr_masked"]
    other = grading.grade(
        tmp_path / "subs", base / "hidden", tmp_path / "other", mask_seed=8, progress=False
    )
    assert rows_by_name(other)["ben"]["rows_ssim"] != before["rows_ssim"]
    fresh = json.loads((tmp_path / "out" / grading.GRADING_JSON).read_text())
    assert fresh["settings"]["mask_seed"] == 7


def test_a_model_that_cannot_be_rebuilt_for_its_twin_is_refused():
    with pytest.raises(grading._Refused, match="could not be rebuilt .*untrained twin"):
        grading._untrained_twin(object())  # no from_config: as a config that no longer builds


def checker_images(n, seed):
    """Images a classical fill cannot guess but a model learns at once: a random colour each, plus
    a one-pixel checkerboard of +-0.25 (the same in every patch). Harmonic inpainting smooths the
    checkerboard away where pixels are hidden."""
    rng = np.random.default_rng(seed)
    i, j = np.indices((32, 32))
    sign = np.where((i + j) % 2, 1.0, -1.0)[None, :, :, None]
    return (rng.uniform(0.3, 0.7, (n, 1, 1, 3)) + 0.25 * sign).astype(np.float32)


def test_training_earns_points_a_built_in_harmonic_fill_does_not(tmp_path):
    """An untrained harmonic-fill ViT starts as harmonic inpainting: it scores what its untrained
    twin scores and earns no learning points; the same model trained a few steps does."""
    from helpers.masking import make_mask
    from helpers.patches import patch_mask_to_pixels
    from helpers.training import masked_mse

    hidden = tmp_path / "hidden"
    hidden.mkdir()
    test = np.round(checker_images(12, 0) * 255).astype(np.uint8)
    batch = {b"data": test.transpose(0, 3, 1, 2).reshape(12, 3072), b"labels": [0] * 12}
    (hidden / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))

    def vit():
        return build_model("vit", fill="harmonic", embed_dim=32, depth=1, mlp_dim=64, seed=0)

    for name in ("untrained", "trained"):
        (tmp_path / "subs" / name).mkdir(parents=True)
    vit().save(tmp_path / "subs" / "untrained" / "model.keras")
    model = vit()
    train = checker_images(64, 1)
    strategies = enumerate(grading.GRADED_STRATEGIES)
    masks = [make_mask(s, 0.5, images=train, patch_size=4, seed=k) for k, s in strategies]
    mask = np.concatenate(masks).astype(np.float32)
    x = np.concatenate([train] * len(masks))
    weight = patch_mask_to_pixels(mask, 4, (32, 32))[..., 0].astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=masked_mse())
    model.fit(
        {"images": x, "mask": mask}, x, sample_weight=weight, batch_size=64, epochs=2, verbose=0
    )
    model.save(tmp_path / "subs" / "trained" / "model.keras")

    result = grading.grade(tmp_path / "subs", hidden, tmp_path / "out", mask_seed=3, progress=False)
    rows = rows_by_name(result)
    untrained, trained = rows["untrained"], rows["trained"]
    assert untrained["status"] == trained["status"] == "graded"
    per = {column: points for column, points, _ in grading.RUBRIC}
    for s in grading.GRADED_STRATEGIES:
        # the untrained model is its own twin: nothing added
        assert abs(untrained[f"{s}_training_added"]) < 1e-3, (s, untrained)
        assert trained[f"{s}_psnr_masked_untrained"] == pytest.approx(
            untrained[f"{s}_psnr_masked"], abs=1e-3
        )
        assert trained[f"{s}_training_added"] >= grading.MIN_TRAINING_GAIN_DB, (s, trained)
    for row in (untrained, trained):  # the rubric, strategy by strategy
        assert row["score"] == sum(
            per["runs"]
            + per["training_added"] * (row[f"{s}_training_added"] >= 1.0)
            + per["beats_biharmonic"]
            * (row[f"{s}_psnr_masked"] >= rows["biharmonic"][f"{s}_psnr_masked"])
            for s in grading.GRADED_STRATEGIES
        ), row
    assert untrained["score"] <= 3 * (per["runs"] + per["beats_biharmonic"])
    assert trained["score"] >= 3 * (per["runs"] + per["training_added"])
    assert untrained["score"] < trained["score"]


@pytest.mark.parametrize(
    "build",
    [
        lambda: build_vit(**TINY, depth=1, num_heads=2, embed_dim=16, mlp_dim=16),
        lambda: build_mae(
            **TINY, depth=1, num_heads=2, embed_dim=16, mlp_dim=16, decoder_depth=1,
            decoder_dim=16, decoder_num_heads=2, decoder_mlp_dim=16, min_mask_ratio=0.3,
        ),
        lambda: build_vit_cnn(**TINY, depth=1, num_heads=2, embed_dim=16, mlp_dim=16),
        lambda: build_cnn_autoencoder((32, 32, 3), patch_size=4, filters=(8, 16), seed=0),
        lambda: build_aae((32, 32, 3), patch_size=4, filters=(8, 16), image_weight=1e-3),
    ],
    ids=["vit", "mae", "vit_cnn", "cnn", "aae"],
)  # fmt: skip
def test_zeroing_the_hidden_pixels_changes_nothing_for_the_package_models(build):
    """The grader gives models 0 where pixels are hidden; the package's models never read them."""
    from helpers.masking import make_mask
    from helpers.patches import patch_mask_to_pixels

    rng = np.random.default_rng(0)
    images = rng.random((4, 32, 32, 3), dtype=np.float32)
    mask = make_mask("random", 0.5, images=images, patch_size=4, seed=0)
    zeroed = np.where(patch_mask_to_pixels(mask, 4, (32, 32)), 0, images).astype(np.float32)
    model = build()
    m = mask.astype(np.float32)
    full = np.asarray(model.predict_on_batch({"images": images, "mask": m}))
    given = np.asarray(model.predict_on_batch({"images": zeroed, "mask": m}))
    np.testing.assert_allclose(given, full, atol=1e-5)


def test_too_slow_and_too_large_processes_are_stopped(graded):
    base, _ = graded
    work = base / "work"
    work.mkdir()
    model = str(base / "submissions" / "ben" / "best.keras")
    slow = grading.run_isolated(model, work, ["random"], timeout=0.5, memory_mb=None)
    assert slow["ok"] is False and "took longer than the 0.5 s allowed" in slow["reason"]
    assert slow["seconds"] < 10
    big = grading.run_isolated(model, work, ["random"], timeout=60, memory_mb=60)
    assert big["ok"] is False and "more than the 60 MB of memory allowed" in big["reason"]


def test_a_process_that_fails_gets_its_last_words(graded):
    base, _ = graded
    empty = base / "no-images"
    empty.mkdir()  # no images.npy: the worker itself fails
    row = grading.run_isolated("mean_colour", empty, ["random"], timeout=60, memory_mb=None)
    assert row["ok"] is False and "exit code 1" in row["reason"]
    assert "images.npy" in row["reason"]


def test_the_command_line(graded, tmp_path, capsys):
    base, _ = graded
    (tmp_path / "subs" / "fay").mkdir(parents=True)  # an empty folder
    for student in ("dee", "eve"):  # a file that is not a model, a model of the wrong interface
        (tmp_path / "subs" / student).mkdir()
        source = base / "submissions" / student / "model.keras"
        (tmp_path / "subs" / student / "model.keras").write_bytes(source.read_bytes())
    args = ["grade", "--submissions", str(tmp_path / "subs"), "--data-dir", str(base / "hidden")]
    assert main([*args, "--output", str(tmp_path / "out"), "--n-test", "6"]) == 0
    out = capsys.readouterr().out
    assert "| fay | 0 / 12 | no .keras file in the folder |" in out
    assert "| dee | 0 / 12 | model.keras is not a Keras model file" in out
    assert "| eve | 0 / 12 | wrong interface: its inputs are ['images']" in out
    assert "grades.csv" in out
    settings = json.loads((tmp_path / "out" / grading.GRADING_JSON).read_text())["settings"]
    assert settings["n_test"] == 6 and 0 <= settings["mask_seed"] < 2**31


@pytest.mark.parametrize(
    "extra, message",
    [(["--submissions", "missing"], "--submissions"), (["--data-dir", "missing"], "--data-dir")],
)
def test_a_wrong_command_line_exits_2(graded, tmp_path, capsys, extra, message):
    base, _ = graded
    (tmp_path / "subs").mkdir()
    given = {"--submissions": str(tmp_path / "subs"), "--data-dir": str(base / "hidden")}
    given.update({extra[0]: str(tmp_path / extra[1])})
    args = ["grade", *(x for kv in given.items() for x in kv), "--output", str(tmp_path / "o")]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_a_bad_limit_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["grade", "--submissions", "s", "--data-dir", "d", "--output", "o", "--timeout", "0"])
    assert info.value.code == 2 and "--timeout" in capsys.readouterr().err
