"""``tf.train.Example`` records encoded and decoded in pure Python (no TensorFlow).

Build workers turn manifest rows into serialized examples without importing TensorFlow, so
they start fast and can run in any process. The encoding is deterministic: map entries are
written in sorted key order, exactly as ``Example.SerializeToString(deterministic=True)``
writes them, so the same content always gives the same bytes.

Wire format (``tensorflow/core/example/{example,feature}.proto``)::

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }   # entry: key = 1, value = 2
    Feature  { oneof { BytesList bytes_list = 1; FloatList float_list = 2;
                       Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

The features of each record kind (``a/image``, ``label``, ``anchor/id``, ...) are defined in
:mod:`pairgen.spec.schema`; :func:`encode_record` writes any kind from its manifest row.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from pairgen.errors import BuildError, DatasetError
from pairgen.spec.schema import PAIRS, TRIPLETS, KindSchema, schema_of

_U64 = (1 << 64) - 1
_SMALL = [bytes([i]) for i in range(128)]
_BYTES_LIST, _FLOAT_LIST, _INT64_LIST = 0x0A, 0x12, 0x1A


def _varint(n: int) -> bytes:
    """Protobuf base-128 varint; negative values as 10-byte two's complement."""
    if 0 <= n < 128:
        return _SMALL[n]
    n &= _U64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _delimited(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


def _key_prefix(key: str) -> bytes:
    """Map-entry key field plus the value field's tag, shared by every record."""
    raw = key.encode("utf-8")
    return b"\x0a" + _varint(len(raw)) + raw + b"\x12"


_PREFIX_CACHE: dict[str, bytes] = {}


def _prefix(key: str) -> bytes:
    prefix = _PREFIX_CACHE.get(key)
    if prefix is None:
        prefix = _PREFIX_CACHE[key] = _key_prefix(key)
    return prefix


def _entry(prefix: bytes, feature: bytes) -> bytes:
    """One ``map<string, Feature>`` entry (tag 1 of ``Features``)."""
    body = prefix + _varint(len(feature)) + feature
    return b"\x0a" + _varint(len(body)) + body


def _bytes_feature(value: bytes) -> bytes:
    inner = b"\x0a" + _varint(len(value)) + value
    return b"\x0a" + _varint(len(inner)) + inner


def _int_feature(value: int) -> bytes:
    v = _varint(value)
    return b"\x1a" + _SMALL[len(v) + 2] + b"\x0a" + _SMALL[len(v)] + v


def _feature(key: str, value: Any) -> bytes:
    """Encode one Python value as a ``Feature`` message."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes_feature(bytes(value))
    if isinstance(value, str):
        return _bytes_feature(value.encode("utf-8"))
    if isinstance(value, (bool, int, np.integer)):
        return _int_feature(int(value))
    if isinstance(value, (float, np.floating)):
        value = [value]
    values = value.ravel().tolist() if isinstance(value, np.ndarray) else list(value)
    if all(isinstance(v, (bytes, bytearray)) for v in values) and values:
        inner = b"".join(_delimited(0x0A, bytes(v)) for v in values)
        return _delimited(_BYTES_LIST, inner)
    if all(isinstance(v, (bool, int, np.integer)) for v in values):
        packed = b"".join(_varint(int(v)) for v in values)
        return _delimited(_INT64_LIST, _delimited(0x0A, packed) if values else b"")
    if all(isinstance(v, (bool, int, float, np.integer, np.floating)) for v in values):
        packed = struct.pack(f"<{len(values)}f", *values)
        return _delimited(_FLOAT_LIST, _delimited(0x0A, packed))
    raise BuildError(
        f"feature {key!r} has an unsupported value {type(value).__name__}; "
        "use bytes, an int, or a sequence of ints or floats."
    )


def _wrap(entries: list[bytes]) -> bytes:
    features = b"".join(entries)
    return b"\x0a" + _varint(len(features)) + features


def encode_example(features: Mapping[str, bytes | int | Sequence[int] | Sequence[float]]) -> bytes:
    """Serialize a feature mapping as a ``tf.train.Example`` (deterministic, sorted keys).

    Args:
        features: Feature name to value. ``bytes`` (or ``str``, encoded as UTF-8) becomes a
            one-element ``bytes_list``; a list of ``bytes`` a multi-element one; an ``int``
            or a sequence of ints an ``int64_list``; a float or a sequence with floats a
            ``float_list`` (float32). An empty sequence becomes an empty ``int64_list``.

    Returns:
        The serialized ``Example``, byte-identical to TensorFlow's
        ``SerializeToString(deterministic=True)`` for the same content.

    Raises:
        BuildError: If a value has an unsupported type.
    """
    keys = sorted(features, key=lambda k: k.encode("utf-8"))
    return _wrap([_entry(_prefix(k), _feature(k, features[k])) for k in keys])


def _image_header(prefix: bytes, size: int) -> bytes:
    """Everything of a bytes entry that precedes the ``size`` image bytes."""
    inner = 1 + len(_varint(size)) + size
    feature = 1 + len(_varint(inner)) + inner
    body = len(prefix) + len(_varint(feature)) + feature
    return (b"\x0a" + _varint(body) + prefix + _varint(feature) + b"\x0a" + _varint(inner)
            + b"\x0a" + _varint(size))


def _int_headers(prefix: bytes) -> list[bytes]:
    """Entry headers for an int64 feature, indexed by the varint's length (1..10)."""
    def header(n: int) -> bytes:
        feature = b"\x1a" + _SMALL[n + 2] + b"\x0a" + _SMALL[n]
        body = len(prefix) + 1 + len(feature) + n
        return b"\x0a" + _varint(body) + prefix + _SMALL[len(feature) + n] + feature

    return [b""] + [header(n) for n in range(1, 11)]


def _fixed_encoder(image_keys: Sequence[str], int_keys: Sequence[str]) -> Callable[[dict[str, Any]], bytes]:
    """A fast encoder for a fixed schema: key headers are computed once, here.

    Every image header depends only on the image's length (constant for raw pixels), so
    headers are cached per length; an int entry is a precomputed header plus the varint.
    """
    order = sorted([*image_keys, *int_keys], key=lambda k: k.encode("utf-8"))
    prefixes = [(k, k in image_keys, _key_prefix(k)) for k in order]
    # an image's table is (key prefix, header cache by length); an int's, its headers by varint length
    plan: list[tuple[str, bool, Any]] = [(k, img, (prefix, {}) if img else _int_headers(prefix))
                                         for k, img, prefix in prefixes]

    def encode(values: dict[str, Any]) -> bytes:
        parts: list[bytes] = []
        for key, is_image, table in plan:
            value = values[key]
            if is_image:
                value = value if type(value) is bytes else bytes(value)
                prefix, cache = table
                header = cache.get(len(value))
                if header is None:
                    header = _image_header(prefix, len(value))
                    if len(cache) < 4096:
                        cache[len(value)] = header
                parts += (header, value)
            else:
                v = _varint(int(value))
                parts += (table[len(v)], v)
        features = b"".join(parts)
        return b"\x0a" + _varint(len(features)) + features

    return encode


_ENCODERS: dict[KindSchema, Any] = {}


def _encoder(schema: KindSchema):
    encode = _ENCODERS.get(schema)
    if encode is None:
        encode = _ENCODERS[schema] = _fixed_encoder(schema.image_keys, schema.int_keys)
    return encode


def encode_record(kind: Any, columns: Mapping[str, Any], row: int, images: Sequence[bytes]) -> bytes:
    """Serialize the record of manifest row ``row`` of any kind.

    Args:
        kind: The record kind (a :class:`~pairgen.spec.config.Kind` or its value).
        columns: Manifest column name to array (the columns of :mod:`pairgen.spec.schema`).
        row: The row to encode.
        images: The encoded images, in the kind's role order.

    Returns:
        The serialized ``tf.train.Example``.
    """
    schema = schema_of(kind)
    return _encoder(schema)(schema.encode_fields(columns, row, tuple(images)))


def encode_pair(a_image: bytes, b_image: bytes, *, label: int, a_id: int, b_id: int,
                a_class: int, b_class: int, record_id: int) -> bytes:
    """Serialize one pair record.

    Args:
        a_image: Encoded image bytes (raw uint8 HxWxC, PNG or JPEG) of the first image.
        b_image: The second image, in the same encoding.
        label: 1 if both images share a class, else 0.
        a_id: ``image_id`` of the first image in the catalog.
        b_id: ``image_id`` of the second image.
        a_class: ``class_id`` of the first image.
        b_class: ``class_id`` of the second image.
        record_id: Row of this record in the split's manifest.

    Returns:
        The serialized ``tf.train.Example``.
    """
    return _encoder(PAIRS)({
        "a/image": a_image, "b/image": b_image, "label": label, "a/id": a_id, "b/id": b_id,
        "a/class": a_class, "b/class": b_class, "record_id": record_id,
    })


def encode_triplet(anchor_image: bytes, positive_image: bytes, negative_image: bytes, *,
                   anchor_id: int, positive_id: int, negative_id: int, anchor_class: int,
                   positive_class: int, negative_class: int, record_id: int) -> bytes:
    """Serialize one triplet record.

    Args:
        anchor_image: Encoded anchor image bytes (raw, PNG or JPEG).
        positive_image: An image of the anchor's class, same encoding.
        negative_image: An image of another class, same encoding.
        anchor_id: ``image_id`` of the anchor.
        positive_id: ``image_id`` of the positive.
        negative_id: ``image_id`` of the negative.
        anchor_class: ``class_id`` of the anchor.
        positive_class: ``class_id`` of the positive (equal to ``anchor_class``).
        negative_class: ``class_id`` of the negative.
        record_id: Row of this record in the split's manifest.

    Returns:
        The serialized ``tf.train.Example``.
    """
    return _encoder(TRIPLETS)({
        "anchor/image": anchor_image, "positive/image": positive_image,
        "negative/image": negative_image, "anchor/id": anchor_id, "positive/id": positive_id,
        "negative/id": negative_id, "anchor/class": anchor_class,
        "positive/class": positive_class, "negative/class": negative_class,
        "record_id": record_id,
    })


# --------------------------------------------------------------------------- decoding


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise DatasetError("truncated varint in tf.train.Example record; the shard is corrupt.")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field_number, wire_type, value)``; value is an int or a bytes slice."""
    pos, end = 0, len(data)
    value: int | bytes
    while pos < end:
        tag, pos = _read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        else:
            raise DatasetError(f"unsupported protobuf wire type {wire} in tf.train.Example record.")
        if pos > end:
            raise DatasetError("truncated tf.train.Example record; the shard is corrupt.")
        yield number, wire, value


def _signed(n: int) -> int:
    return n - (1 << 64) if n >= (1 << 63) else n


def _decode_list(kind: int, data: bytes) -> list:
    out: list = []
    for number, wire, value in _fields(data):
        if number != 1:
            continue
        if kind == 1:
            out.append(bytes(value))
        elif kind == 2:
            out.extend(struct.unpack(f"<{len(value) // 4}f", value) if wire == 2
                       else struct.unpack("<f", value))
        elif wire == 2:
            pos = 0
            while pos < len(value):
                n, pos = _read_varint(value, pos)
                out.append(_signed(n))
        else:
            out.append(_signed(value))
    return out


def decode_example(data: bytes) -> dict[str, list]:
    """Parse a serialized ``tf.train.Example`` without TensorFlow.

    Args:
        data: One serialized record.

    Returns:
        Feature name to a list of values: ``list[bytes]`` for a ``bytes_list``,
        ``list[int]`` for an ``int64_list`` and ``list[float]`` for a ``float_list``
        (a feature set to none of them gives ``[]``).

    Raises:
        DatasetError: If the bytes are not a valid ``Example`` (a corrupt shard).
    """
    out: dict[str, list] = {}
    for number, _, features in _fields(bytes(data)):
        if number != 1:
            continue
        for entry_number, _, entry in _fields(features):
            if entry_number != 1:
                continue
            key, values = "", list[Any]()
            for field, _, value in _fields(entry):
                if field == 1:
                    key = bytes(value).decode("utf-8")
                elif field == 2:
                    values = []
                    for kind, _, payload in _fields(value):
                        values = _decode_list(kind, payload) if kind in (1, 2, 3) else values
            out[key] = values
    return out
