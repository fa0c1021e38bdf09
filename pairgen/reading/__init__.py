"""Every reader of a finished dataset: NumPy arrays, stream, P x K, tf.data, PyTorch."""
