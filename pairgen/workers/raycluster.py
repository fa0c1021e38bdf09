"""Ray for the build: a private local Ray, or an existing cluster named by its address.

With an address (``--ray-address``, ``[build] ray_address`` or ``RAY_ADDRESS``) the build
connects to that cluster and passes no resource arguments; every node must have pairgen
installed and see the source and output folders at the same paths. Without one, it starts
a private Ray on this machine (``address="local"``), never attaching to a Ray that happens to
run here. Tasks that die with their worker are retried by Ray; errors raised by pairgen in a
task come back as the same one-line errors as with local processes.
"""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

from pairgen.errors import BuildError, PairgenError

TASK_RETRIES = 3
_PROBE_TIMEOUT_S = 180


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    for line in text.splitlines():
        if "No module named" in line or "ModuleNotFoundError" in line:
            return line.strip()
    return text.splitlines()[0].strip()


_GCS_PROBE_S = 3.0  # how long the cluster's GCS may take to answer one request


def _check_reachable(address: str) -> None:
    """Fail at once (not after Ray's 20 s of retries and warnings) unless ``address`` answers as Ray.

    ``host:port`` must be a Ray GCS: it is asked for its cluster id, the first request that
    ``ray.init`` makes, with a deadline of a few seconds. Something else listening there (a
    proxy that accepts every connection, another server) or nothing at all fails in one line.
    A ``ray://`` address (Ray Client) only has to accept a connection.
    """
    client = address.startswith("ray://")
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host, int(port)), timeout=_GCS_PROBE_S).close()
        problem = None if client else _gcs_problem(f"{host}:{port}")
    except OSError as exc:
        problem = str(exc.strerror or exc)
    if problem is not None:
        raise BuildError(f"cannot reach the Ray cluster at '{address}' ({problem}). Start it with "
                         "`ray start --head` and give the address it prints (host:6379), or fix "
                         "--ray-address / [build] ray_address / RAY_ADDRESS.") from None


def _gcs_problem(address: str) -> str | None:
    """Why ``address`` is not a Ray GCS, or ``None`` when it answers as one (or cannot be asked)."""
    try:  # Ray's own gRPC stubs (grpcio comes with Ray); imported by name, they have no type stubs
        grpc = importlib.import_module("grpc")
        gcs_service_pb2 = importlib.import_module("ray.core.generated.gcs_service_pb2")
        gcs_service_pb2_grpc = importlib.import_module("ray.core.generated.gcs_service_pb2_grpc")
    except ImportError:  # a Ray without these modules: ray.init finds out itself
        return None
    channel = grpc.insecure_channel(address)
    try:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=_GCS_PROBE_S)
    except grpc.RpcError as exc:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"no answer within {_GCS_PROBE_S:g} s"
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED):
            return "what answers there is not a Ray cluster's GCS"
        return None  # it answered as gRPC (authentication, version): ray.init says what is wrong
    finally:
        channel.close()
    return None


def probe(paths: tuple[str, ...]) -> tuple[str, str, list[str]]:
    """Run on each node: pairgen's version, the host name, and which ``paths`` it cannot see."""
    import pairgen

    return pairgen.__version__, socket.gethostname(), [p for p in paths if not os.path.exists(p)]


class RaySession:
    """One build's use of Ray: submit tasks, collect results, disconnect or stop at the end."""

    def __init__(self, ray: Any, *, owns: bool, address: str | None) -> None:
        self.ray, self.owns, self.address = ray, owns, address
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remotes: dict[Any, Any] = {}

    @classmethod
    def open(cls, address: str | None, *, workers: int, shared_paths: tuple[str, ...] = (),
             note: Callable[[str], None] = lambda m: None) -> RaySession:
        """Connect to ``address`` (else ``RAY_ADDRESS``), or start a private local Ray.

        Args:
            address: A cluster address (``host:port``, ``auto``, ``ray://host:port``) or ``None``.
            workers: CPUs of a private local Ray (ignored when connecting).
            shared_paths: Folders every node must see (the source, the output's parent).
            note: Reports which Ray the build uses.

        Raises:
            BuildError: Ray is missing, the cluster is unreachable, or its nodes lack pairgen or
                the shared paths.
        """
        try:
            import ray
        except ImportError:
            raise BuildError("--executor ray needs Ray: pip install 'pairgen[ray]'.") from None
        address = address or os.environ.get("RAY_ADDRESS") or None
        if ray.is_initialized():
            session = cls(ray, owns=False, address=address)
            note(f"ray: using the Ray this process is connected to ({session.cpus} CPUs)")
            return session
        if address is None:
            ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            session = cls(ray, owns=True, address=None)
            note(f"ray: started a private local Ray with {session.cpus} CPUs")
            return session
        _check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, ...
            raise BuildError(f"cannot connect to the Ray cluster at '{address}': {_first_line(exc)}. Start it with "
                             "`ray start --head`, or fix --ray-address / RAY_ADDRESS.") from None
        session = cls(ray, owns=True, address=address)
        try:
            nodes = session.check_nodes(shared_paths)
        except BaseException:
            session.close()
            raise
        note(f"ray: connected to {address} ({session.cpus} CPUs on {nodes} node(s))")
        return session

    def check_nodes(self, shared_paths: tuple[str, ...]) -> int:
        """Run :func:`probe` on every alive node; fail with one line naming the first bad node."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        import pairgen

        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        remote = self.ray.remote(num_cpus=0, max_retries=1)(probe)
        refs = [remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(tuple(shared_paths)) for n in nodes]
        for node, ref in zip(nodes, refs):
            where = node.get("NodeManagerAddress", "?")
            try:
                version, host, missing = self.ray.get(ref, timeout=_PROBE_TIMEOUT_S)
            except Exception as exc:
                raise BuildError(f"Ray workers on node {where} cannot run pairgen ({_first_line(exc)}). Install "
                                 f"pairgen {pairgen.__version__} with Ray on every node: "
                                 f"pip install 'pairgen[ray]=={pairgen.__version__}'.") from None
            if version != pairgen.__version__:
                raise BuildError(f"node {where} ({host}) has pairgen {version}, this build {pairgen.__version__}; "
                                 "install the same version on every node so the output is the same.")
            if missing:
                raise BuildError(f"node {where} ({host}) cannot see '{missing[0]}'. Ray workers read the source "
                                 "and write --out themselves: put both on a file system every node mounts at the "
                                 "same path (e.g. NFS).")
        return len(nodes)

    def _remote(self, fn: Callable) -> Any:
        if fn not in self._remotes:
            self._remotes[fn] = self.ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(fn)
        return self._remotes[fn]

    def submitter(self, fn: Callable) -> Callable[[Any], Any]:
        """``task -> ObjectRef`` for ``fn`` as a retried Ray task."""
        remote = self._remote(fn)
        return lambda task: remote.remote(task)

    def get(self, ref: Any) -> Any:
        """The task's result; a pairgen error or an ``OSError`` (a full disk) raised in it is
        raised here as itself, so that it becomes the same one-line error as in a local build."""
        from ray.exceptions import RayError, RayTaskError

        try:
            return self.ray.get(ref)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, (PairgenError, OSError)):
                raise cause.with_traceback(None) from None
            raise BuildError(f"a Ray task of the build failed: {_first_line(cause or exc)}") from None
        except RayError as exc:
            raise BuildError(f"a Ray task of the build failed after {TASK_RETRIES} retries: "
                             f"{_first_line(exc)}") from None

    def run_jobs(self, jobs: list) -> Iterator[tuple[str, Any]]:
        """Ray version of :meth:`pairgen.workers.pool.Pool.run_jobs` (final steps wait on their parts in Ray)."""
        kinds: dict[Any, tuple[str, int]] = {}
        for index, (parts, final) in enumerate(jobs):
            refs = [self._remote(fn).remote(task) for fn, task in parts]
            for ref in refs:
                kinds[ref] = ("part", index)
            if final is not None:
                kinds[self._remote(final[0]).remote(final[1], *refs)] = ("done", index)
            elif len(refs) == 1:
                kinds[refs[0]] = ("both", index)
        pending = list(kinds)
        try:
            while pending:
                done, pending = self.ray.wait(pending, num_returns=1)
                kind, index = kinds[done[0]]
                result = self.get(done[0])
                if kind in ("part", "both"):
                    yield "part", result
                if kind in ("done", "both"):
                    yield "done", (index, result)
        finally:
            for ref in pending:
                self.ray.cancel(ref)

    def close(self) -> None:
        """Stop the private Ray, or disconnect from the cluster (which keeps running)."""
        if self.owns:
            self.ray.shutdown()
            self.owns = False
