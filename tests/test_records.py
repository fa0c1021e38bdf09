"""tf.train.Example encoding without TensorFlow: byte equality with TF, round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairgen.codec.example import decode_example, encode_example, encode_pair, encode_triplet
from pairgen.errors import BuildError, DatasetError

tf = pytest.importorskip("tensorflow")

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _tf_example(features: dict) -> bytes:
    feats = {}
    for key, value in features.items():
        if isinstance(value, bytes):
            feats[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        elif isinstance(value, int):
            feats[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        elif value and isinstance(value[0], float):
            feats[key] = tf.train.Feature(float_list=tf.train.FloatList(value=value))
        else:
            feats[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=value))
    example = tf.train.Example(features=tf.train.Features(feature=feats))
    return example.SerializeToString(deterministic=True)


def _pixels(seed: int, size: int = 784) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def test_encode_pair_equals_tensorflow_bytes_and_parses():
    a, b = _pixels(0), _pixels(1)
    ours = encode_pair(a, b, label=1, a_id=3, b_id=70000, a_class=2, b_class=2, record_id=12)
    expected = {"a/image": a, "b/image": b, "label": 1, "a/id": 3, "b/id": 70000,
                "a/class": 2, "b/class": 2, "record_id": 12}
    assert ours == _tf_example(expected)
    parsed = tf.train.Example.FromString(ours).features.feature
    assert parsed["a/image"].bytes_list.value == [a]
    assert parsed["b/id"].int64_list.value == [70000]
    assert parsed["label"].int64_list.value == [1]


def test_encode_triplet_equals_tensorflow_bytes():
    imgs = [_pixels(i, 300) for i in range(3)]
    ours = encode_triplet(*imgs, anchor_id=1, positive_id=2, negative_id=3, anchor_class=0,
                          positive_class=0, negative_class=5, record_id=0)
    expected = {"anchor/image": imgs[0], "positive/image": imgs[1], "negative/image": imgs[2],
                "anchor/id": 1, "positive/id": 2, "negative/id": 3, "anchor/class": 0,
                "positive/class": 0, "negative/class": 5, "record_id": 0}
    assert ours == _tf_example(expected)
    assert decode_example(ours)["negative/class"] == [5]


def test_encode_example_lists_floats_and_empty_match_tensorflow():
    features = {"z": [1, -2, 2**40], "f": [0.5, -1.25, 3.0], "e": [], "img": b"", "k": -1}
    ours = encode_example(features)
    assert ours == _tf_example(features)
    decoded = decode_example(ours)
    assert decoded == {"z": [1, -2, 2**40], "f": [0.5, -1.25, 3.0], "e": [], "img": [b""], "k": [-1]}


def test_negative_int_is_ten_byte_varint():
    encoded = encode_example({"x": -1})
    assert b"\xff" * 9 + b"\x01" in encoded
    assert tf.train.Example.FromString(encoded).features.feature["x"].int64_list.value == [-1]


def test_numpy_values_are_accepted():
    encoded = encode_example({"i": np.int64(7), "v": np.array([1, 2], np.int32), "f": np.float32(0.5)})
    assert decode_example(encoded) == {"i": [7], "v": [1, 2], "f": [0.5]}


def test_unsupported_value_raises_named_error():
    with pytest.raises(BuildError, match="feature 'bad'"):
        encode_example({"bad": [object()]})


def test_decode_truncated_record_raises():
    encoded = encode_pair(b"ab", b"cd", label=0, a_id=1, b_id=2, a_class=0, b_class=1, record_id=0)
    with pytest.raises(DatasetError, match="truncated"):
        decode_example(encoded[:-3])


@settings(max_examples=60, deadline=None)
@given(a=st.binary(max_size=3000), b=st.binary(max_size=3000), label=st.integers(0, 1),
       ids=st.tuples(INT64, INT64, INT64, INT64, INT64))
def test_pair_round_trip_property(a, b, label, ids):
    a_id, b_id, a_class, b_class, record_id = ids
    encoded = encode_pair(a, b, label=label, a_id=a_id, b_id=b_id, a_class=a_class,
                          b_class=b_class, record_id=record_id)
    expected = {"a/image": a, "b/image": b, "label": label, "a/id": a_id, "b/id": b_id,
                "a/class": a_class, "b/class": b_class, "record_id": record_id}
    assert encoded == _tf_example(expected)
    assert decode_example(encoded) == {k: [v] for k, v in expected.items()}
