"""Towers, heads and the CLI surface of the trainer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

keras = pytest.importorskip("keras")

from pairgen.cli.training import COMMANDS  # noqa: E402
from pairgen.errors import ConfigError  # noqa: E402
from pairgen.train.models import build_head, build_tower, pair_model, triplet_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, shape, width, layer_types", [
    ("conv-bn", (28, 28, 1), 4, {"Conv2D", "BatchNormalization", "MaxPooling2D", "Dense", "UnitNormalization"}),
    ("mlp", (28, 28, 1), 16, {"Flatten", "Dense"}),
    ("small-cnn", (28, 28, 1), 4, {"Conv2D", "MaxPooling2D", "Dropout", "GlobalAveragePooling2D"}),
    ("lenet", (28, 28, 1), None, {"BatchNormalization", "Conv2D", "AveragePooling2D", "Flatten"}),
    ("eca-resnet18", (16, 16, 3), 4, {"Conv2D", "ECA", "Add", "LeakyReLU", "GlobalAveragePooling2D"}),
])
def test_towers_build_with_their_reference_layers(name: str, shape: tuple, width: int | None,
                                                  layer_types: set) -> None:
    tower = build_tower(name, shape, width=width, embedding_dim=6)
    out = tower.predict(np.random.default_rng(0).random((2, *shape), np.float32), verbose=0)
    assert out.shape == (2, 6) and np.isfinite(out).all()
    assert layer_types <= {type(layer).__name__ for layer in tower.layers}


def test_reference_sizes_are_kept_by_default() -> None:
    lenet = build_tower("lenet", (28, 28, 1))
    convs = [layer for layer in lenet.layers if type(layer).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [4, 16] and [c.kernel_size for c in convs] == [(5, 5), (5, 5)]
    assert lenet.output_shape == (None, 10)
    mlp = build_tower("mlp", (28, 28, 1))
    assert [layer.units for layer in mlp.layers if type(layer).__name__ == "Dense"] == [512, 256, 128]
    assert build_tower("small-cnn", (28, 28, 1)).output_shape == (None, 48)


def test_resnet50_tower_is_l2_normalized_and_needs_a_real_weight_file(tmp_path: Path) -> None:
    tower = build_tower("resnet50", (32, 32, 3), width=32, embedding_dim=16)
    out = tower.predict(np.random.default_rng(0).random((2, 32, 32, 3), np.float32), verbose=0)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-4)
    with pytest.raises(ConfigError, match="does not exist"):
        build_tower("resnet50", (32, 32, 3), weights=str(tmp_path / "missing.h5"))


def test_resnet50_loads_a_local_keras_weight_file_and_freezes_the_early_blocks(tmp_path: Path) -> None:
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    keras.utils.set_random_seed(7)
    source = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "resnet50_notop.h5"  # the layout of Keras' published no-top ImageNet file
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, source)
    keras.utils.set_random_seed(8)  # a different random init, so equality below means "loaded"
    tower = build_tower("resnet50", (32, 32, 3), width=32, embedding_dim=16, weights=str(path))
    base = next(layer for layer in tower.layers if layer.name.startswith("resnet50"))
    for want, got in zip(source.get_weights(), base.get_weights()):
        np.testing.assert_array_equal(want, got)
    assert not base.get_layer("conv1_conv").trainable and not base.get_layer("conv3_block4_out").trainable
    assert base.get_layer("conv4_block1_1_conv").trainable and base.get_layer("conv5_block3_out").trainable
    other = tmp_path / "lenet.h5"
    with h5py.File(other, "w") as f:
        save_weights_to_hdf5_group(f, build_tower("lenet", (28, 28, 1)))
    with pytest.raises(ConfigError, match="does not fit Keras ResNet50"):
        build_tower("resnet50", (32, 32, 3), weights=str(other))


def test_too_small_images_are_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="needs images of at least 16x16"):
        build_tower("lenet", (12, 12, 1))


@pytest.mark.parametrize("head, expected", [
    ("distance", 5.0),                    # |(3, 4)| = 5
])
def test_distance_head_by_hand(head: str, expected: float) -> None:
    model = build_head(head, 2)
    out = model.predict([np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])], verbose=0)
    assert out.shape == (1, 1) and out[0, 0] == pytest.approx(expected, rel=1e-5)
    l1 = build_head("distance", 2, distance="l1").predict([np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])], verbose=0)
    assert l1[0, 0] == pytest.approx(7.0)


@pytest.mark.parametrize("head", ["absdiff", "sigmoid", "bn-sigmoid"])
def test_sigmoid_heads_output_probabilities(head: str) -> None:
    out = build_head(head, 3).predict([np.zeros((4, 3)), np.ones((4, 3))], verbose=0)
    assert out.shape == (4, 1) and ((out > 0) & (out < 1)).all()


def test_siamese_models_share_one_tower() -> None:
    tower = build_tower("mlp", (8, 8, 1), width=8, embedding_dim=4)
    pair = pair_model(tower, build_head("distance", 4))
    triplet = triplet_model(tower, build_head("distance", 4))
    x = np.random.default_rng(1).random((3, 8, 8, 1), np.float32)
    np.testing.assert_allclose(pair.predict([x, x], verbose=0), 0.0, atol=1e-3)
    assert triplet.predict([x, x, x[::-1]], verbose=0).shape == (3, 2)
    assert len(pair.trainable_weights) == len(tower.trainable_weights)


def test_every_command_has_help_with_an_example() -> None:
    for command in COMMANDS:
        assert command.help and "Example:" in command.help, command.name
        result = CliRunner().invoke(command, ["--help"])
        assert result.exit_code == 0 and "Example:" in result.output


def test_importing_the_train_cli_does_not_import_tensorflow() -> None:
    code = ("import sys, pairgen.cli.training, pairgen.train, pairgen.train.config; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "False"]
