"""The ``pairgen`` command line: a thin click layer over the library, one module per group.

* :mod:`pairgen.cli.building`: ``scan``, ``build`` (read a source, write a dataset);
* :mod:`pairgen.cli.datasets`: ``verify``, ``inspect``, ``diff``, ``preview``, ``report`` (read a dataset);
* :mod:`pairgen.cli.training`: ``train``, ``evaluate``, ``embed`` (the reference trainer);
* :mod:`pairgen.cli.common`: the error handler and shared options.

Heavy modules (pandas, OpenCV, TensorFlow) are imported inside the commands, so
``pairgen --help`` stays instant.
"""

from __future__ import annotations

import click

from pairgen import __version__
from pairgen.cli import building, datasets, training


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pairgen")
def main() -> None:
    """Reproducible pair and triplet datasets for Siamese networks and metric learning.

    \b
    Example:
        pairgen scan datasets/mnist-5k
        pairgen build pipelines/mnist-demo.toml --out build/mnist-demo
        pairgen inspect build/mnist-demo
    """


for _command in (*building.COMMANDS, *datasets.COMMANDS, *training.COMMANDS):
    main.add_command(_command)

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    main()
