"""Cheap checks that the loaders run on what they read.

Before a split is read, :func:`check_split` makes sure that:

* the card's ``format_version`` is one this pairgen can read (checked by
  :func:`pairgen.dataset.card.read_card`);
* the card's image spec (``image.height``, ``width``, ``channels``, ``encoding``) agrees
  with the build config the card records (:func:`check_image_spec`): a raw record holds
  only bytes, so a spec edited to another shape of the same byte count (28x28 to 14x56)
  can only be told from the card itself;
* every shard has the byte size the card lists; when it does not, its records are counted
  so the error says how many it holds (:func:`check_shard_sizes`);
* the first record of every shard is the one the card's entry lists (its ``first_record``
  digest: a shard file exchanged with another of the same size, of this split or another,
  is caught; :func:`tie_problem`), has the image features the card describes (the byte
  count for ``raw``, the decoded shape for ``png``/``jpeg``) and the ``record_id`` at which
  the card places the shard (:func:`check_first_records`). Only each shard's first record is
  read (for GZIP shards, only as many bytes are decompressed).

While a split is read, each shard's record count is compared with the card when the shard
ends: by :func:`pairgen.load_numpy` for the NumPy reader, and ``assert_cardinality`` on each
shard inside the tf.data pipeline. A damaged shard (a checksum fails) found while reading is
named by the NumPy readers (:func:`shard_damage`); inside TensorFlow, whose errors name no
shard, :func:`dataset_errors` (and :func:`raise_dataset_errors`) read the shards through
(:func:`diagnose`) and raise the one-line :class:`DatasetError` naming the one at fault.
``pairgen verify`` does the full check of every record.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from pairgen.codec.example import decode_example
from pairgen.codec.images import decode_record_image
from pairgen.codec.tfrecord import TFRecordError, iter_records, read_records_at
from pairgen.dataset.card import FIRST_RECORD, Card, first_record_digest, read_card
from pairgen.errors import DatasetError, PairgenError
from pairgen.spec.schema import schema_of

_F = TypeVar("_F", bound=Callable[..., Any])


class HasPath(Protocol):
    """A dataset handle: anything with the dataset directory as ``path``."""

    @property
    def path(self) -> str | os.PathLike: ...


MANIFEST_MISMATCH = "differs from its manifest row"  # load_classes' check of each record, in TensorFlow
_CARDINALITY_RE = re.compile(r"expected to contain \d+ elements? but contained (only|at least) \d+")


def spec_text(shape: tuple[int, int, int], encoding: str) -> str:
    """``28x28x1 raw``."""
    return f"{shape[0]}x{shape[1]}x{shape[2]} {encoding}"


def check_image_spec(card: Card, where: str | os.PathLike) -> None:
    """Raise if the card's image spec disagrees with the build config it records.

    Cards without a recorded config (written by other tools) are not checked.

    Raises:
        DatasetError: If height, width, channels or encoding differ from ``config.image``.
    """
    image = card.config.get("image") if isinstance(card.config, dict) else None
    if not isinstance(image, dict) or not image.get("size"):
        return
    shape, encoding = card.image.shape, card.image.encoding
    try:
        want = (int(image["size"][0]), int(image["size"][1]), int(image.get("channels", shape[2])))
    except (TypeError, ValueError, IndexError):
        return  # an unreadable config is reported by verify's fingerprint check
    want_encoding = str(image.get("encoding", encoding))
    if (shape, encoding) != (want, want_encoding):
        raise DatasetError(f"'{Path(where) / 'dataset.json'}' says images are {spec_text(shape, encoding)} but "
                           f"its build config says {spec_text(want, want_encoding)}: the card was edited. "
                           "Restore dataset.json or rebuild the dataset.")


def count_message(path: str, count: int, expected: int, root: str | os.PathLike) -> str:
    """The one-line error for a shard whose record count differs from the card."""
    return f"shard '{path}' holds {count} records, dataset.json says {expected}; run `pairgen verify {root}`."


def rebuild_command(root: str | os.PathLike) -> str:
    """The command that rebuilds the dataset at ``root`` in place."""
    return f"`pairgen build ... --out {root} --overwrite`"


def damaged_message(path: str | os.PathLike, detail: str, root: str | os.PathLike) -> str:
    """The one-line error for a shard whose bytes are damaged (a checksum fails, it ends early)."""
    return (f"shard '{path}' is damaged ({detail}); restore the file from a copy or rebuild the dataset "
            f"({rebuild_command(root)}).")


@contextlib.contextmanager
def shard_damage(root: str | os.PathLike) -> Iterator[None]:
    """Around reading shards of the dataset at ``root``: a damaged file (:class:`TFRecordError`
    naming it) becomes the one-line :func:`damaged_message`."""
    try:
        yield
    except TFRecordError as exc:
        if exc.path is None:
            raise
        raise DatasetError(damaged_message(exc.path, exc.detail, root)) from None


def foreign_records(card: Card, entry: dict[str, Any], first: bytes | None) -> str | None:
    """What a shard file holds if its first record is not the one its card entry lists, else ``None``.

    The entry's ``first_record`` (:func:`pairgen.dataset.card.first_record_digest`) ties the
    file to its split and place: a file exchanged with another shard starts with another
    record. Entries without it (cards written before it) and empty files are not judged.

    Returns:
        ``"the records of shard 'shards/val-00001-of-00002.tfrecord'"`` when the record is
        another shard's of the same card, ``"records of another shard or dataset"`` otherwise.
    """
    want = entry.get(FIRST_RECORD)
    if want is None or first is None:
        return None
    got = first_record_digest(first)
    if got == want:
        return None
    other = next((e["path"] for entries in card.shards.values() for e in entries
                  if e.get(FIRST_RECORD) == got and e["path"] != entry["path"]), None)
    return f"the records of shard '{other}'" if other is not None else "records of another shard or dataset"


def tie_problem(card: Card, root: str | os.PathLike, entry: dict[str, Any], first: bytes | None) -> str | None:
    """The one-line error for a shard file that holds another shard's records (:func:`foreign_records`), or ``None``."""
    holds = foreign_records(card, entry, first)
    if holds is None:
        return None
    fix = ("move each file back to its own name" if holds.startswith("the records of shard")
           else "restore the file")
    return (f"shard '{Path(root) / entry['path']}' holds {holds}, not its own (the files were exchanged or "
            f"replaced); {fix} or rebuild the dataset ({rebuild_command(root)}).")


def _first_record(path: str, compression: str) -> bytes | None:
    """The first record of a shard file (only as many bytes read or decompressed as it takes)."""
    return read_records_at(path, [0], compression=compression).get(0)


def _count(path: str, compression: str) -> int:
    return sum(1 for _ in iter_records(path, compression=compression, read_data=False))


def check_shard_sizes(card: Card, root: Path, split: str) -> None:
    """Raise if a shard's file size differs from the card (one ``stat`` per shard).

    Raises:
        DatasetError: Naming the shard and, when its records can be counted and differ, how
            many it holds.
    """
    compression = card.compression
    for entry in card.shards.get(split, []):
        want = entry.get("bytes")
        path = str(root / entry["path"])
        if want is None or not os.path.isfile(path) or os.path.getsize(path) == int(want):
            continue
        with contextlib.suppress(TFRecordError):  # a first record that cannot be read: counted below
            problem = tie_problem(card, root, entry, _first_record(path, compression))
            if problem is not None:
                raise DatasetError(problem)
        try:
            count = _count(path, compression)
        except TFRecordError as exc:
            raise DatasetError(damaged_message(path, exc.detail, root)) from None
        if "records" in entry and count != int(entry["records"]):
            raise DatasetError(count_message(path, count, int(entry["records"]), root))
        raise DatasetError(f"shard '{path}' has {os.path.getsize(path):,} bytes, dataset.json says "
                           f"{int(want):,}: it changed after the build; run `pairgen verify {root}`.")


def image_mismatch(record: dict[str, list], image_keys: tuple[str, ...],
                   card: Card) -> tuple[list[np.ndarray], str | None]:
    """Decode a record's images and say how they differ from the card's image spec.

    Returns:
        The decoded uint8 ``(h, w, c)`` images (one per key of ``image_keys``, up to the
        first bad one) and ``None``, or a one-phrase reason (``"a/image: ..."``).
    """
    shape, encoding = card.image.shape, card.image.encoding
    out: list[np.ndarray] = []
    for key in image_keys:
        values = record.get(key) or []
        if len(values) != 1:
            return out, f"{key}: missing"
        try:
            out.append(decode_record_image(values[0], encoding, shape))
        except PairgenError as exc:
            return out, f"{key}: {str(exc).rstrip('.')}"
    return out, None


def record_images(record: dict[str, list], image_keys: tuple[str, ...], card: Card,
                  where: str, index: int, root: str | os.PathLike) -> list[np.ndarray]:
    """Decode the images of a decoded record, checking them against the card's image spec.

    Returns:
        One uint8 ``(h, w, c)`` array per key of ``image_keys``.

    Raises:
        DatasetError: Naming the shard (``where``), the record and the feature.
    """
    images, problem = image_mismatch(record, image_keys, card)
    if problem is not None:
        raise DatasetError(f"shard '{where}' record {index} does not match the image spec "
                           f"{spec_text(card.image.shape, card.image.encoding)} of dataset.json ({problem}); restore dataset.json "
                           f"or run `pairgen verify {root}`.")
    return images


def check_first_records(card: Card, root: Path, split: str) -> None:
    """Read the first record of every shard of ``split``: check that it is the shard's, its images and its place.

    The record's digest must be the card entry's ``first_record`` (:func:`tie_problem`), so a
    shard file exchanged with another of the same size is caught. A shard's first ``record_id``
    must be the number of records the card lists before it, so shards listed in another order
    than they were written are caught too (for records in pairgen's own layout; see
    :func:`_own_layout`).

    Raises:
        DatasetError: If a shard holds another shard's records, a record's images do not match
            the card's image spec, or a shard starts at another record than the card says.
    """
    compression, image_keys = card.compression, schema_of(card.kind).image_keys
    start = 0
    for entry in card.shards.get(split, []):
        path = str(root / entry["path"])
        records = int(entry.get("records", 1))
        if records and os.path.isfile(path):
            try:
                first = _first_record(path, compression)
            except TFRecordError as exc:
                raise DatasetError(damaged_message(path, exc.detail, root)) from None
            problem = tie_problem(card, root, entry, first)
            if problem is not None:
                raise DatasetError(problem)
            try:
                record = decode_example(first) if first is not None else None
            except PairgenError as exc:
                raise DatasetError(f"shard '{path}' cannot be read ({exc}); run `pairgen verify {root}`.") from None
            if record is not None:
                record_images(record, image_keys, card, path, 0, root)
                if _own_layout(record, card):
                    _check_start(record, start, path, root)
        start += records


def _own_layout(record: dict[str, list], card: Card) -> bool:
    """Whether a record has exactly the features of pairgen's own layout, one value each.

    Only such records number themselves by ``record_id`` across a split's shards; records
    written by other tools are read (per record) without checking where they start.
    """
    schema = schema_of(card.kind)
    return set(record) == set(schema.feature_types) and all(len(v) == 1 for v in record.values())


def _check_start(record: dict[str, list], start: int, path: str, root: str | os.PathLike) -> None:
    first = (record.get("record_id") or [start])[0]
    if first != start:
        raise DatasetError(f"shard '{path}' starts with record_id {first} but the shard list in dataset.json "
                           f"places it at record {start}: the list's order or counts were changed; "
                           f"run `pairgen verify {root}`.")


def check_split(card: Card, root: Path, split: str) -> None:
    """All the checks a loader runs before reading ``split`` (see the module docstring)."""
    check_image_spec(card, root)
    check_shard_sizes(card, root, split)
    check_first_records(card, root, split)


def shard_problem(card: Card, root: Path, entry: dict[str, Any]) -> str | None:
    """Read a whole shard, every checksum checked: the one-line problem of the first thing wrong, or ``None``.

    Checked: that the file exists, holds the shard's own records (:func:`tie_problem`), is not
    damaged, and holds as many records as the card lists.
    """
    path = str(root / entry["path"])
    if not os.path.isfile(path):
        return f"shard '{path}' listed in dataset.json is missing; restore it or rebuild the dataset ({rebuild_command(root)})."
    count = 0
    try:
        for data in iter_records(path, compression=card.compression):
            if count == 0:
                problem = tie_problem(card, root, entry, data)
                if problem is not None:
                    return problem
            count += 1
    except TFRecordError as exc:
        return damaged_message(path, exc.detail, root)
    if "records" in entry and count != int(entry["records"]):
        return count_message(path, count, int(entry["records"]), root)
    return None


def diagnose(root: str | os.PathLike) -> DatasetError | None:
    """Read every shard of a dataset and name the first that is not as the card says.

    Called after a read failed inside TensorFlow, whose errors name no shard (a count check
    gives only the counts, a damaged record only its byte offset). Reads every byte once.

    Returns:
        The one-line :class:`DatasetError` naming the shard, or ``None`` if every shard is intact.
    """
    root = Path(root)
    card = read_card(root)
    for entries in card.shards.values():
        for entry in entries:
            problem = shard_problem(card, root, entry)
            if problem is not None:
                return DatasetError(problem)
    return None


# TensorFlow's errors that a shard's bytes can cause, and the marks by which they are told from
# others of the same class (a model's shape error is an InvalidArgumentError too). A Python
# error raised in a generator feeding tf.data (load_classes) arrives as InvalidArgumentError
# with its own text inside.
_DATA_MARKS = ("corrupted record", "DatasetError", "TFRecordError", MANIFEST_MISMATCH)
_EMBEDDED_RE = re.compile(r"(?:DatasetError|TFRecordError): (.+)")
_MISMATCH_RE = re.compile(rf"a record of .* {MANIFEST_MISMATCH}; run `pairgen verify [^`]*`")


def _is_count_failure(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("tensorflow") and bool(_CARDINALITY_RE.search(str(exc)))


def _is_data_failure(exc: BaseException) -> bool:
    """A TensorFlow error that damaged or exchanged shards can cause (see ``_DATA_MARKS``)."""
    if not type(exc).__module__.startswith("tensorflow"):
        return False
    text = str(exc)
    return (_is_count_failure(exc) or type(exc).__name__ == "DataLossError"
            or any(mark in text for mark in _DATA_MARKS))


def translate(exc: BaseException, root: str | os.PathLike) -> DatasetError | None:
    """The one-line :class:`DatasetError` for a TensorFlow error caused by the dataset at ``root``.

    The shards are read through (:func:`diagnose`) to name the one at fault; if all are
    intact, a pairgen message carried inside the TensorFlow error is used.

    Returns:
        The error to raise instead, or ``None`` when ``exc`` is not a data failure (raise it).
    """
    if not _is_data_failure(exc):
        return None
    found = diagnose(root)
    if found is not None:
        return found
    embedded = _EMBEDDED_RE.search(str(exc))
    if embedded is not None:
        return DatasetError(embedded.group(1).strip())
    mismatch = _MISMATCH_RE.search(str(exc))
    if mismatch is not None:
        return DatasetError(mismatch.group(0) + ".")
    if _is_count_failure(exc):
        return DatasetError(f"the records read from '{root}' differ from what dataset.json lists; "
                            f"run `pairgen verify {root}`.")
    return None


@contextlib.contextmanager
def dataset_errors(root: str | os.PathLike) -> Iterator[None]:
    """Around a loop over ``pairgen.load(root, ...)`` or ``pairgen.load_classes(root, ...)``: a shard
    that fails inside TensorFlow (damaged, exchanged, another record count) is raised as the
    one-line :class:`DatasetError` naming the shard and the fix.

    Example::

        with pairgen.reading.checks.dataset_errors("build/mnist-demo"):
            for (a, b), label in pairgen.load("build/mnist-demo", "train", batch_size=256):
                ...
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - only data failures are translated
        error = translate(exc, root)
        if error is None:
            raise
        raise error from None


def raise_dataset_errors(func: _F) -> _F:
    """Like :func:`dataset_errors` around a function that takes the dataset as its ``info`` argument.

    The dataset is taken explicitly: the decorated function must have a parameter named
    ``info`` (a handle with a ``path``, such as the trainer's ``DatasetInfo`` or a
    :class:`pairgen.reading.handle.SplitHandle`); the decorator refuses any other function.

    Raises:
        TypeError: When decorating a function without an ``info`` parameter.
    """
    signature = inspect.signature(func)
    if "info" not in signature.parameters:
        raise TypeError(f"raise_dataset_errors: {func.__qualname__} has no 'info' parameter (the dataset)")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - only data failures are translated
            info: HasPath = signature.bind(*args, **kwargs).arguments["info"]
            error = translate(exc, info.path)
            if error is None:
                raise
            raise error from None

    return wrapper  # type: ignore[return-value]
