"""Optional dependencies: imported on first use, or named in one line with the extra to install.

``pip install pairgen`` installs the core (NumPy, pandas, PyArrow, OpenCV, click, tqdm,
crc32c): scan, build, verify, inspect, diff, preview and ``load_numpy``. Everything else
comes with an extra (the names below are the ``[project.optional-dependencies]`` of
``pyproject.toml``)::

    pairgen[tf]      tensorflow                      pairgen.load, load_arrays, feature_spec
    pairgen[keras]   keras, matplotlib               the trainer on a backend you install (jax, torch)
    pairgen[train]   keras, matplotlib, tensorflow   the trainer on Keras' default TensorFlow backend
    pairgen[ray]     ray                             pairgen build --executor ray
    pairgen[torch]   torch                           pairgen.torch (StreamDataset for a DataLoader)

A missing package raises :class:`MissingDependencyError` (a ``PairgenError`` and an
``ImportError``), so the CLI prints one line and exits 1 instead of showing a traceback.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import ModuleType

from pairgen.errors import MissingDependencyError

# Extra name -> the distributions it adds to the core.
EXTRAS: dict[str, tuple[str, ...]] = {
    "tf": ("tensorflow",),
    "keras": ("keras", "matplotlib"),
    "train": ("keras", "matplotlib", "tensorflow"),
    "ray": ("ray",),
    "torch": ("torch",),
}

_BACKEND_MODULES = ("tensorflow", "jax", "torch")
_TRAINER_FIX = ("pip install 'pairgen[train]' (Keras, matplotlib, TensorFlow), or 'pairgen[keras]' (Keras, "
                "matplotlib) and jax or torch, with KERAS_BACKEND=jax or torch")


def _missing_module(exc: ImportError) -> str:
    """The top-level name of the module an ImportError could not find ('' if unknown)."""
    return (getattr(exc, "name", None) or "").partition(".")[0]


def require(module: str, *, extra: str, feature: str, instead: str = "") -> ModuleType:
    """Import ``module``, or raise a one-line error naming the extra that installs it.

    Args:
        module: Module to import, e.g. ``"tensorflow"`` or ``"matplotlib.figure"``.
        extra: The pairgen extra that installs it (a key of ``EXTRAS``), e.g. ``"tf"``.
        feature: What needs it, as the user calls it, e.g. ``"pairgen.load (tf.data)"``.
        instead: What works without it, added to the message as ", or <instead>".

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: If ``module``'s package is not installed. An ImportError
            raised inside an installed package (a broken installation) is not hidden.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.partition(".")[0]
        if _missing_module(exc) != top:
            raise
        other = f", or {instead}" if instead else ""
        raise MissingDependencyError(
            f"{feature} needs {top}, which is not installed: pip install 'pairgen[{extra}]'{other}.") from None


def keras_backend() -> str:
    """The backend Keras will load: ``KERAS_BACKEND``, else ``~/.keras/keras.json``, else tensorflow."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    config = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json"
    try:
        return str(json.loads(config.read_text()).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def require_keras(feature: str = "the pairgen trainer") -> ModuleType:
    """Import Keras, or say in one line what to install: Keras itself or its backend's framework.

    Args:
        feature: What needs Keras, e.g. ``"pairgen train"``.

    Returns:
        The ``keras`` module.

    Raises:
        MissingDependencyError: If Keras, or the framework of the backend it is set to, is
            not installed.
    """
    try:
        return importlib.import_module("keras")
    except ImportError as exc:
        missing = _missing_module(exc)
        if missing == "keras":
            raise MissingDependencyError(
                f"{feature} needs Keras, which is not installed: {_TRAINER_FIX}.") from None
        if missing not in _BACKEND_MODULES:
            raise
        fix = _TRAINER_FIX if missing == "tensorflow" else \
            f"pip install {missing}, or unset KERAS_BACKEND and pip install 'pairgen[train]' (TensorFlow)"
        raise MissingDependencyError(
            f"{feature} runs on Keras' {keras_backend()!r} backend (KERAS_BACKEND or ~/.keras/keras.json), "
            f"but {missing} is not installed: {fix}.") from None
