"""helpers.checkpoints and helpers.tools.publishing: publishing a trained run with its provenance,
and the committed course checkpoints reproducing the metrics they were published with."""

import json

import pytest
from test_evaluation import write_cifar_folder

from helpers import checkpoints, models, training
from helpers._checks import SettingError
from helpers.tools import publishing

TINY = dict(embed_dim=16, depth=1, num_heads=2, mlp_dim=32)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    from helpers.data import load_dataset

    root = tmp_path_factory.mktemp("ckpt")
    data_dir = write_cifar_folder(root / "cifar", n=16, train_batches=2)
    ds = load_dataset("cifar10", data_dir=data_dir, seed=0)
    model = models.build_model("vit", seed=0, **TINY)
    training.train(model, ds, epochs=1, batch_size=8, run_dir=root / "run", verbose=0)
    target = publishing.publish(
        root / "run", "vit", data_dir, "python -m helpers train ...", folder=root / "out"
    )
    return target, data_dir


@pytest.mark.slow
def test_publish_writes_the_model_and_its_provenance(published):
    target, data_dir = published
    record = checkpoints.provenance("vit", target.parent)
    assert target.exists() and not list(target.parent.glob(".*tmp"))
    assert record["command"] == "python -m helpers train ..." and record["epochs"] == 1
    assert record["images_seen"] > 0 and record["label"] == "mask-token ViT"
    assert record["data_sha256"] == publishing.data_hash(data_dir)
    for who in ("model", "untrained", "biharmonic", "mean_colour"):
        assert set(record["heldout"][who]) == {
            f"{s}@{r:g}" for s in publishing.STRATEGIES for r in publishing.RATIOS
        }
    table = publishing.heldout_table(record)
    assert table[-1]["random"] == pytest.approx(
        record["heldout"]["model"]["random@0.5"] - record["heldout"]["biharmonic"]["random@0.5"]
    )
    again = publishing.reproduce_metrics(checkpoints.load("vit", target.parent))
    assert again == record["reproduce"]


@pytest.mark.slow
def test_a_missing_checkpoint_or_run_is_named(tmp_path, published):
    with pytest.raises(SettingError) as info:
        checkpoints.load("vit", tmp_path)
    assert info.value.param == "checkpoint" and info.value.value == "vit"
    with pytest.raises(SettingError) as info:
        publishing.publish(tmp_path, "vit", published[1], "cmd", folder=tmp_path)
    assert info.value.param == "run"
    with pytest.raises(SettingError) as info:
        checkpoints.path("vit_biharmonic")
    assert info.value.param == "checkpoint"


def test_the_data_hash_changes_with_the_data(tmp_path):
    a = publishing.data_hash(write_cifar_folder(tmp_path / "a", n=4, train_batches=1))
    b = publishing.data_hash(write_cifar_folder(tmp_path / "b", n=4, seed=1, train_batches=1))
    assert a != b and len(a) == 64
    with pytest.raises(SettingError) as info:
        publishing.data_hash(tmp_path)
    assert info.value.param == "data_dir"


COMMITTED = [n for n in checkpoints.NAMES if checkpoints.available(n)]


@pytest.mark.parametrize("name", COMMITTED)
def test_a_committed_checkpoint_loads_as_the_model_it_records(name):
    # the Keras classes keep their registered names whichever module of the package loads them
    record = checkpoints.provenance(name)
    model = checkpoints.load(name)
    assert model.builder == name and model.count_params() == record["parameters"]
    assert checkpoints.describe(name).startswith(checkpoints.label(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMITTED)
def test_a_committed_checkpoint_reproduces_its_recorded_metrics(name):
    record = json.loads(checkpoints.path(name).with_suffix(".json").read_text())
    model = checkpoints.load(name)
    assert model.builder == name and model.count_params() == record["parameters"]
    again = publishing.reproduce_metrics(model)
    for strategy, values in record["reproduce"].items():
        for metric, value in values.items():
            assert publishing.close_enough(again[strategy][metric], value), (strategy, metric)
