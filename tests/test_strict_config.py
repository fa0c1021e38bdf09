"""Strict config: every value is type-checked before use, with one line naming key, type and value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pairgen.cli import main
from pairgen.dataset import tables as mf
from pairgen.errors import ConfigError
from pairgen.spec.config import AugmentConfig, BuildConfig
from pairgen.spec.validation import MAX_IMAGE_BYTES, check_record_memory

# (pipeline TOML, message the one-line error must contain)
BAD_PIPELINES = [
    ('[augment]\nenabled = "false"\nflip = "false"\n',
     "augment.enabled must be a boolean (true or false, without quotes); received: augment.enabled='false' (a string)"),
    ('[augment]\nenabled = true\nflip = "false"\n', "augment.flip must be a boolean"),
    ('[split]\ndedupe = "false"\n', "split.dedupe must be a boolean (true or false, without quotes); received: split.dedupe='false' (a string)"),
    ('[sample]\nunique = "no"\n', "received: sample.unique='no' (a string)"),
    ('[build]\nworkers = "four"\n', "build.workers must be an integer; received: build.workers='four' (a string)"),
    ('[build]\nworkers = 2.0\n', "build.workers must be an integer; received: build.workers=2.0 (a float)"),
    ('[build]\nworkers = 100000\n', "build.workers must be an integer in 0..1,024; received: build.workers=100000"),
    ('[build]\noverwrite = 1\n', "build.overwrite must be a boolean (true or false, without quotes); received: build.overwrite=1 (an integer)"),
    ('[image]\nsize = ["a", "b"]\n', "image.size must be two integers [h, w] or 'HxW'; received: image.size=['a', 'b'] (an array)"),
    ('[image]\nsize = [28.0, 28.0]\n', "image.size must be two integers"),
    ('[image]\nsize = [100000, 100000]\n', "image.size must have sides in 1..65,500; received: image.size=100000x100000"),
    ('[image]\nsize = [5000, 5000]\nchannels = 3\n', "image.size 5000x5000 with 3 channel(s) is 75,000,000 bytes"),
    ('[image]\nchannels = true\n', "image.channels must be an integer; received: image.channels=True (a boolean)"),
    ('[image]\nchannels = "3"\n', "image.channels must be an integer; received: image.channels='3' (a string)"),
    ('[image]\njpeg_quality = 101\n', "image.jpeg_quality must be an integer in 1..100"),
    ('[image]\nmax_pixels = "big"\n', "image.max_pixels must be an integer"),
    ('[image]\nencoding = 3\n', "image.encoding must be a string, one of 'raw', 'png', 'jpeg'; received: image.encoding=3"),
    ('[split]\nfractions = { val = "x" }\n', "split.fractions.val must be a number; received: split.fractions.val='x' (a string)"),
    ('[split]\nfractions = [0.8, 0.2]\n', "split.fractions must be a table like"),
    ('[split]\nfractions = { train = nan, test = 0.5 }\n', "split.fractions.train must be a finite number"),
    ('[split]\nfractions = { "../../x" = 1.0 }\n', "split.fractions has an invalid split name '../../x'"),
    ('[sample]\nnum_records = "10"\n', "sample.num_records must be an integer; received: sample.num_records='10' (a string)"),
    ('[sample]\npositive_fraction = "half"\n', "sample.positive_fraction must be a number"),
    ('[sample]\nstrategy = 3\n', "sample.strategy must be a string; received: sample.strategy=3 (an integer)"),
    ('[augment]\ncopies = 0\n', "augment.copies must be an integer in 1..1,000; received: augment.copies=0"),
    ('[augment]\nrotation = inf\n', "augment.rotation must be a finite number"),
    ('[augment]\nscale = "big"\n', "augment.scale must be [min, max]; received: augment.scale='big' (a string)"),
    ('[augment]\ntranslate = true\n', "augment.translate must be a number; received: augment.translate=True (a boolean)"),
    ('[augment]\nresize = [9000, 9000]\n', "augment.resize 9000x9000 with 1 channel(s) is 81,000,000 bytes"),
    ('[shards]\nshard_mb = "16"\n', "shards.shard_mb must be a number; received: shards.shard_mb='16' (a string)"),
    ('[source]\nclass_depth = "2"\n', "source.class_depth must be an integer; received: source.class_depth='2' (a string)"),
    ('[source]\nallow_outside_root = "yes"\n', "source.allow_outside_root must be a boolean"),
    ('[source]\npath = 5\n', "source.path must be a string; received: source.path=5 (an integer)"),
    ('seed = "0"\n', "seed must be a non-negative integer"),
    ('seed = 1979-05-27\n', "seed must be a non-negative integer"),
    ('name = 5\n', "name must be a string; received: name=5 (an integer)"),
    ('version = 1\n', "version must be a string; received: version=1 (an integer)"),
    ('source = 5\n', "[source] must be a table"),
]


@pytest.mark.parametrize("text, message", BAD_PIPELINES)
def test_bad_pipeline_values_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "p.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        BuildConfig.from_toml(p)
    line = str(err.value)
    assert message in line and "\n" not in line and line.startswith(str(p))


@pytest.mark.parametrize("text, message", BAD_PIPELINES[:3] + BAD_PIPELINES[10:12])
def test_cli_build_reports_bad_values_in_one_line_and_writes_nothing(tmp_path: Path, text: str,
                                                                     message: str) -> None:
    p = tmp_path / "p.toml"
    p.write_text(text, encoding="utf-8")
    out = tmp_path / "ds"
    result = CliRunner().invoke(main, ["build", str(p), "--src", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert not out.exists() and sorted(q.name for q in tmp_path.iterdir()) == ["p.toml"]


def test_string_booleans_never_turn_augmentation_on() -> None:
    with pytest.raises(ConfigError, match="augment.enabled must be a boolean"):
        AugmentConfig(enabled="false", flip="false")  # type: ignore[arg-type]
    assert AugmentConfig(enabled=False, flip=True).enabled is False


def test_pipeline_file_not_utf8_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "latin1.toml"
    p.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.toml' is not UTF-8 text \(byte 11\); save it as UTF-8 TOML"):
        BuildConfig.from_toml(p)
    result = CliRunner().invoke(main, ["build", str(p), "--out", str(tmp_path / "ds")])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "not UTF-8" in result.output


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('name = "x"\n[split\nby = "class"\n')
    with pytest.raises(ConfigError) as err:
        BuildConfig.from_toml(p)
    assert "is not valid TOML" in str(err.value) and "line 2" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("args, message", [
    (["--image-size", "100000x100000"], "image.size must have sides in 1..65,500; received: image.size=100000x100000"),
    (["--image-size", "5000x5000", "--channels", "3"], "is 75,000,000 bytes per decoded image, over the limit"),
    (["--splits", "../../x=1.0"], "invalid split name '../../x'"),
    (["--splits", "/tmp/abs=1.0"], "invalid split name '/tmp/abs'"),
    (["--splits", ".hidden=1.0"], "invalid split name '.hidden': it starts with '.'"),
    (["--augment"], "augment.enabled is true (--augment) but no random transform is set"),
])
def test_cli_flags_fail_fast_in_one_line(tmp_path: Path, make_image_tree, args: list[str], message: str) -> None:
    src = make_image_tree(tmp_path, classes=2, per_class=4)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(main, ["build", "--src", str(src), "--out", str(tmp_path / "out" / "ds"),
                                       "--quiet", *args])
    assert result.exit_code == 1, result.output
    assert message in result.output and result.output.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written anywhere
    assert not (tmp_path.parent / "x.parquet").exists()


def test_augment_error_names_every_augment_key() -> None:
    cfg = BuildConfig().override({"augment.enabled": True, "augment.resize": [30, 30]})
    with pytest.raises(ConfigError) as err:
        cfg.augment.check_active()
    for key in ("crop", "flip", "rotation", "shear", "scale", "translate", "brightness", "contrast"):
        assert key in str(err.value)
    cfg.override({"augment.flip": True}).augment.check_active()  # one random transform is enough


def test_record_memory_check_counts_records_held_at_once() -> None:
    args = dict(size=(1024, 1024), channels=3, images_per_record=2, records_in_flight=5 * 512)
    with pytest.raises(ConfigError, match=r"1024x1024x3 needs about 15.0 GiB for the 2,560 records"):
        check_record_memory(memory_bytes=16 * 2**30, **args)
    check_record_memory(memory_bytes=64 * 2**30, **args)
    assert 4096 * 4096 * 3 <= MAX_IMAGE_BYTES < 5000 * 5000 * 3


def test_build_refuses_records_that_would_not_fit_before_scanning(tmp_path: Path) -> None:
    # 8000x8000 gray is under the per-image bound, but 33 chunks of 512 pairs of it are not.
    result = CliRunner().invoke(main, ["build", "--src", str(tmp_path / "missing"), "--image-size", "8000x8000",
                                       "--workers", "16", "--out", str(tmp_path / "ds")])
    assert result.exit_code == 1 and "GiB for the 16,896 records a build holds at once" in result.output
    assert not (tmp_path / "ds").exists()


def test_build_min_per_class_flag(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=["a", "b", "c"], per_class=[6, 6, 2])
    out = tmp_path / "ds"
    result = CliRunner().invoke(main, ["build", "--src", str(src), "--image-size", "24x24", "--min-per-class", "3",
                                       "--splits", "train=1.0", "--workers", "1", "--quiet", "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads(result.output)
    assert card["config"]["source"]["min_per_class"] == 3
    assert card["source"]["classes"] == 2 and card["source"]["skipped_by_reason"] == {"class below min_per_class": 2}
    skipped = mf.read_table(out / "skipped.parquet")
    assert skipped["path"].tolist() == ["c/img_000.png", "c/img_001.png"]
