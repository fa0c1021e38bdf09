"""``pairgen.torch``: the PyTorch readers (:mod:`pairgen.reading.torch`) under the name the documentation uses."""
from pairgen.reading.torch import *  # noqa: F403
