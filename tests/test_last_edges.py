"""The last edges (issue 20): input that was accepted and did something else than asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pairgen.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "pipelines" / "mnist-demo.toml"


def _one_line_error(args: list[str]) -> str:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in res.output, res.output
    return lines[0]


@pytest.mark.parametrize("flags, named", [
    (["--positives-per-image", "3"], "--positives-per-image"),
    (["--negatives-per-image", "2", "--num-records", "9"], "--num-records, --negatives-per-image"),
    (["--no-unique"], "--unique"),
])
def test_images_build_refuses_sampling_flags(tmp_path: Path, make_image_tree, flags: list[str],
                                             named: str) -> None:
    src = make_image_tree(tmp_path, classes=2, per_class=3)
    out = tmp_path / "ds"
    line = _one_line_error(["build", "--src", str(src), "--kind", "images", *flags, "--out", str(out),
                            "--manifest-only", "--quiet"])
    assert f"{named} do" in line and "images datasets (--kind images)" in line
    assert "one record per image" in line and f"Remove {named} from the command line" in line
    assert not out.exists()


def test_images_pipeline_refuses_sampling_keys(tmp_path: Path, make_image_tree) -> None:
    src = make_image_tree(tmp_path, classes=2, per_class=3)
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(f'kind = "images"\n[source]\npath = "{src}"\n'
                        '[sample]\nstrategy = "per-image"\npositives_per_image = 3\nper_class = 4\n')
    line = _one_line_error(["build", str(pipeline), "--out", str(tmp_path / "ds"), "--manifest-only"])
    assert "sample.positives_per_image, sample.per_class do not apply to images datasets" in line
    assert "Remove sample.positives_per_image, sample.per_class from the [sample] table" in line
    # Without the sampling keys the same file builds: the strategy alone is accepted.
    pipeline.write_text(f'kind = "images"\n[source]\npath = "{src}"\n[sample]\nstrategy = "per-image"\n')
    res = CliRunner().invoke(main, ["build", str(pipeline), "--out", str(tmp_path / "ds"), "--manifest-only"])
    assert res.exit_code == 0, res.output


def test_readme_images_command_still_builds_from_the_pairs_demo(tmp_path: Path) -> None:
    """The demo file sets pair counts for kind = "pairs"; --kind images on the command line keeps working."""
    res = CliRunner().invoke(main, ["build", str(DEMO), "--kind", "images", "--out", str(tmp_path / "ds"),
                                    "--manifest-only", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "(images)" in res.output


@pytest.mark.parametrize("kind, flags, message", [
    ("pairs", ["--positives-per-image", "0", "--negatives-per-image", "0"],
     "--positives-per-image and --negatives-per-image ([sample] positives_per_image, negatives_per_image) "
     "are both 0"),
    ("triplets", ["--positives-per-image", "0"],
     "--positives-per-image ([sample] positives_per_image) is 0"),
])
def test_build_refuses_counts_that_draw_no_record(tmp_path: Path, make_image_tree, kind: str,
                                                  flags: list[str], message: str) -> None:
    src = make_image_tree(tmp_path, classes=2, per_class=3)
    out = tmp_path / "ds"
    line = _one_line_error(["build", "--src", str(src), "--kind", kind, *flags, "--out", str(out),
                            "--manifest-only", "--quiet"])
    assert message in line and "the dataset would be empty" in line and "1 or more" in line
    assert not out.exists()
    # One of the two is enough for pairs.
    if kind == "pairs":
        res = CliRunner().invoke(main, ["build", "--src", str(src), "--positives-per-image", "0", "--splits",
                                        "train=1", "--out", str(out), "--manifest-only", "--quiet"])
        assert res.exit_code == 0, res.output


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_labels_that_mark_a_missing_value_are_skipped_not_classes(tmp_path: Path, make_image_tree,
                                                                       fmt: str) -> None:
    import pandas as pd

    from pairgen.dataset.tables import read_table
    from pairgen.scanning.catalog import scan

    root = make_image_tree(tmp_path, classes=2, per_class=6)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    labels = ["cat", "cat", "cat", "dog", "dog", "dog", "NaN", "NA", "nan", "<NA>", "", " "]
    table = root / f"labels.{fmt}"
    frame = pd.DataFrame({"path": files, "label": labels})
    frame.to_csv(table, index=False) if fmt == "csv" else frame.to_parquet(table)
    catalog = scan(table, layout="table")
    assert catalog.class_names == ["cat", "dog"] and len(catalog.images) == 6
    reasons = dict(zip(catalog.skipped["path"], catalog.skipped["reason"]))
    assert reasons == {
        files[6]: "missing label in the table: 'NaN' marks a missing value",
        files[7]: "missing label in the table: 'NA' marks a missing value",
        files[8]: "missing label in the table: 'nan' marks a missing value",
        files[9]: "missing label in the table: '<NA>' marks a missing value",
        files[10]: "missing label in the table",
        files[11]: "missing label in the table",
    }
    out = tmp_path / "ds"
    res = CliRunner().invoke(main, ["build", "--src", str(table), "--layout", "table", "--splits", "train=1",
                                    "--out", str(out), "--manifest-only", "--quiet"])
    assert res.exit_code == 0, res.output
    skipped = read_table(out / "skipped.parquet")
    assert dict(zip(skipped["path"], skipped["reason"])) == reasons


@pytest.mark.parametrize("name", ["train ", " train", "train\u00a0"])
def test_split_names_with_surrounding_whitespace_are_refused(tmp_path: Path, make_image_tree, name: str) -> None:
    from pairgen.errors import ConfigError
    from pairgen.spec.config import BuildConfig, SplitConfig

    with pytest.raises(ConfigError, match="it starts or ends with whitespace"):
        SplitConfig(fractions={name: 0.8, "val": 0.2})
    src = make_image_tree(tmp_path, classes=2, per_class=5)
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(f'[source]\npath = "{src}"\n[split]\nfractions = {{ "{name}" = 0.8, val = 0.2 }}\n',
                        encoding="utf-8")
    line = _one_line_error(["build", str(pipeline), "--out", str(tmp_path / "ds"), "--manifest-only"])
    assert f"split.fractions has an invalid split name {name!r}: it starts or ends with whitespace" in line
    with pytest.raises(ConfigError, match="starts or ends with whitespace"):
        BuildConfig.from_toml(pipeline)


def test_split_folders_and_table_splits_with_surrounding_whitespace_are_skipped(tmp_path: Path,
                                                                               make_image_tree) -> None:
    from pairgen.scanning.catalog import scan

    root = make_image_tree(tmp_path, classes=2, per_class=2)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    table = root / "t.csv"
    table.write_text("path,label,split\n" + "".join(f"{f},a,{'train ' if i else 'train'}\n"
                                                    for i, f in enumerate(files)))
    catalog = scan(table, layout="table")
    assert catalog.images["folder_split"].tolist() == ["train"]
    assert set(catalog.skipped["reason"]) == {"invalid split name: 'train ': it starts or ends with whitespace"}


def test_cli_splits_text_strips_spaces_around_names(tmp_path: Path, make_image_tree) -> None:
    """--splits is shell text: 'train =0.8' names the split 'train', as documented."""
    src = make_image_tree(tmp_path, classes=2, per_class=5)
    out = tmp_path / "ds"
    res = CliRunner().invoke(main, ["build", "--src", str(src), "--kind", "images", "--splits", " train =0.8, val= 0.2",
                                    "--image-size", "8x8", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name.split("-")[0] for p in (out / "shards").iterdir()) == ["train", "val"]


@pytest.mark.parametrize("reader", ["load_numpy", "stream", "load"])
def test_loaders_say_a_manifest_only_dataset_has_no_shards(tmp_path: Path, make_image_tree, reader: str) -> None:
    import pairgen
    from pairgen.errors import DatasetError

    src = make_image_tree(tmp_path, classes=2, per_class=4)
    out = tmp_path / "ds"
    res = CliRunner().invoke(main, ["build", "--src", str(src), "--kind", "images", "--out", str(out),
                                    "--manifest-only", "--quiet"])
    assert res.exit_code == 0, res.output
    with pytest.raises(DatasetError) as info:
        kwargs = {"batch_size": 2} if reader == "stream" else {}
        result = getattr(pairgen, reader)(out, "train", **kwargs)
        next(iter(result))
    message = str(info.value)
    assert "was built with --manifest-only" in message and "no shards" in message
    assert "Rebuild it without --manifest-only" in message and "has no split" not in message


def _images_dataset(tmp_path: Path, make_image_tree, out: Path) -> None:
    src = make_image_tree(tmp_path, classes=2, per_class=4)
    res = CliRunner().invoke(main, ["build", "--src", str(src), "--kind", "images", "--image-size", "8x8",
                                    "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output


def test_a_folder_that_is_not_a_dataset_gets_advice_that_works(tmp_path: Path, make_image_tree) -> None:
    import pairgen
    from pairgen.errors import DatasetError

    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("x")
    inspect = _one_line_error(["inspect", str(other)])
    assert "has no dataset.json: it is not a pairgen dataset" in inspect and "--overwrite" not in inspect
    assert "new or empty folder" in inspect
    with pytest.raises(DatasetError, match="new or empty folder") as info:
        pairgen.load_numpy(other, "train")
    assert "--overwrite" not in str(info.value)
    # An empty folder: building into it, as advised, works.
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _one_line_error(["inspect", str(empty)])
    assert "it is an empty folder, not a pairgen dataset" in line and f"pairgen build --out {empty}" in line
    _images_dataset(tmp_path, make_image_tree, empty)
    assert pairgen.load_numpy(empty, "train")["image"].shape[0] > 0


def test_a_dataset_left_in_old_by_a_crash_is_named_by_inspect_and_the_loaders(tmp_path: Path,
                                                                            make_image_tree) -> None:
    import pairgen
    from pairgen.dataset.layout import sibling
    from pairgen.errors import DatasetError

    out = tmp_path / "ds"
    _images_dataset(tmp_path, make_image_tree, out)
    old = sibling(out, "old")
    out.rename(old)  # a crash between the install's two renames
    line = _one_line_error(["inspect", str(out)])
    assert f"dataset '{out}' does not exist, but the dataset it held is kept in '{old}'" in line
    assert f"The next `pairgen build --out {out}` puts it back first" in line and f"mv '{old}' '{out}'" in line
    with pytest.raises(DatasetError, match="is kept in"):
        pairgen.load_numpy(out, "train")
    # The advice works: the next build restores it before building.
    src = make_image_tree(tmp_path, classes=2, per_class=4, name="src2")
    res = CliRunner().invoke(main, ["build", "--src", str(src), "--kind", "images", "--image-size", "8x8",
                                    "--out", str(out), "--quiet"])
    assert res.exit_code == 1 and "already exists" in res.output  # restored, so a plain rebuild asks for --overwrite
    assert not old.exists() and pairgen.load_numpy(out, "train")["image"].shape[0] > 0
