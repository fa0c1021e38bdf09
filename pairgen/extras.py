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

import contextlib
import importlib
import importlib.util
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
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


# What TensorFlow prints on starting on a machine without a GPU: C++ log lines written before
# TF_CPP_MIN_LOG_LEVEL applies (or at ERROR level, for the missing CUDA driver). Not problems.
_TF_START_LINES = re.compile("|".join([
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"oneDNN custom operations are on",
    r"Could not find cuda drivers on your machine",
    r"failed call to cuInit",
    r"cpu_feature_guard",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"rebuild TensorFlow with the appropriate compiler flags",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"TF-TRT Warning: Could not find TensorRT",
]))


def quiet_tensorflow_start() -> None:
    """Start TensorFlow (import it, find its devices) without its C++ start-up lines on stderr.

    For the commands that will use TensorFlow anyway (``pairgen train``, ``evaluate``,
    ``embed``); call it before TensorFlow is first imported. Only the lines above are left out:
    anything else printed meanwhile (a Python warning, a real error) is written as it came.
    Nothing is done when the user set ``TF_CPP_MIN_LOG_LEVEL`` (they asked for TensorFlow's
    logs at that level), when TensorFlow is already imported or not installed, or when Keras
    runs on another backend. ``TF_ENABLE_ONEDNN_OPTS`` is never changed (it changes results).
    """
    import pairgen

    if pairgen._TF_LOG_LEVEL_GIVEN or "tensorflow" in sys.modules or keras_backend() != "tensorflow":
        return
    if importlib.util.find_spec("tensorflow") is None:
        return
    with _stderr_without(_TF_START_LINES):
        try:
            tf = importlib.import_module("tensorflow")
            tf.config.list_physical_devices()  # where the missing CUDA driver is reported
        except Exception:  # a broken install: the command's own import reports it
            pass


@contextlib.contextmanager
def _stderr_without(lines: re.Pattern[str]) -> Iterator[None]:
    """Capture file descriptor 2 in the body; then write back the captured lines not matching ``lines``."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as capture:
        try:
            saved = os.dup(2)
        except OSError:  # no descriptor 2: nothing would be shown anyway
            yield
            return
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = "".join(line for line in text.splitlines(keepends=True) if not lines.search(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
