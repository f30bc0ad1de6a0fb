import dataclasses

import pytest

from msl import config
from msl.config import CellConfig


def test_defaults_validate_and_id_is_stable():
    a = CellConfig().with_id()
    b = config.from_dict({"n_train": 64}).with_id()
    assert a.cell_id == b.cell_id
    assert a.cell_id.startswith("optimetal2b-s0-d64-seed0-")


def test_id_ignores_where_results_go_but_not_what_is_computed():
    base = CellConfig().with_id().cell_id
    assert config.from_dict({"record_dir": "/tmp/x", "study": "s"}).with_id().cell_id == base
    assert config.from_dict({"nproc_per_node": 2}).with_id().cell_id == base  # msl.distributed
    assert config.from_dict({"max_lr": 1e-3}).with_id().cell_id != base


@pytest.mark.parametrize("values, word", [
    ({"max_lr": -1e-3}, "max_lr"),
    ({"max_lr": 0.0}, "max_lr"),
    ({"n_train": 0}, "n_train"),
    ({"epochs": -2}, "epochs"),
    ({"model": "nonesuch"}, "nonesuch"),
    ({"size": 99}, "99"),
    ({"precision": "fp8"}, "fp8"),
    ({"precision": "bf16", "device": "cpu"}, "CUDA"),
    ({"device": "tpu"}, "tpu"),
    ({"warmup_frac": 1.5}, "warmup_frac"),
    ({"targets": "energy:mse:0, forces:mse:0"}, "weight must be positive"),
    ({"targets": "energy:huber:1"}, "huber"),
    ({"targets": "enthalpy:mae:1"}, "enthalpy"),
    ({"targets": "energy:mae"}, "energy:mae"),
    ({"targets": "energy:mae:-1"}, "negative"),
    ({"targets": "spectrum:mae:1"}, "cannot be learnt by a potential"),
    ({"dataset": "omat"}, "omat"),
    ({"lr_gamma": 1.0}, "lr_ref_params"),
    ({"resume": 2}, "resume"),
    ({"n_train": "ten"}, "n_train"),
    ({"learning_rate": 1e-3}, "learning_rate"),
    ({"nproc_per_node": 0}, "nproc_per_node must be at least 1, got 0"),
    ({"nproc_per_node": 3}, "nproc_per_node=3 must divide batch_size=16"),
    ({"nproc_per_node": 4, "n_train": 2}, "nproc_per_node=4 exceeds n_train=2"),
    ({"nproc_per_node": 2, "device": "cuda:1"}, "nproc_per_node=2 needs device 'cuda' or 'auto'"),
])
def test_bad_values_name_themselves(values, word):
    with pytest.raises(ValueError, match=word):
        config.from_dict(values)


FLOAT_FIELDS = [f.name for f in dataclasses.fields(CellConfig) if f.type == "float"]


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("name", FLOAT_FIELDS)
def test_every_float_must_be_finite(name, value):
    with pytest.raises(ValueError, match=rf"^{name} must be a finite number, got -?(inf|nan)$"):
        config.from_dict({name: value})


def test_ints_and_floats_are_coerced_where_lossless():
    cfg = config.from_dict({"max_lr": 1, "epochs": 4.0})
    assert cfg.max_lr == 1.0 and isinstance(cfg.max_lr, float)
    assert cfg.epochs == 4 and isinstance(cfg.epochs, int)
    with pytest.raises(ValueError, match="epochs"):
        config.from_dict({"epochs": 4.5})


def test_dataset_kinds_are_the_generators():
    from msl.data import KINDS

    assert tuple(KINDS) == config.DATASETS
