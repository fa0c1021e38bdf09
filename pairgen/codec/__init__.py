"""Bytes on disk: TFRecord framing and CRCs, tf.train.Example, columnar parsing, image headers, decode and encode."""
