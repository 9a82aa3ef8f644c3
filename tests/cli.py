"""Run the tools' command lines as a user types them, each in a process of its own, fast.

``run(["tools/test.py", "checkpoint=x.pth", ...])`` runs ``python tools/test.py checkpoint=x.pth
...`` in the repository root and returns a :class:`subprocess.CompletedProcess` (return code,
stdout, stderr); ``start(...)`` returns a handle to kill a running command. ``-m module`` and
``-c CODE`` work as with ``python -m`` (``torch.distributed.run``) and ``python -c``.

Starting a Python that imports torch, torchvision and Hydra takes 12-15 s on the 2-core
development VM, more than most of the commands the tests run. So each command runs in a process
forked from a server that has imported them once (``multiprocessing``'s forkserver, which never
runs a tensor operation, so no thread pool is inherited): a new process with its own memory,
file descriptors 1 and 2 redirected to files, ``os.environ`` set, ``sys.argv`` set, the script
run as ``__main__``, atexit handlers run, and its exit code the process' exit code (1 with a
traceback for an uncaught exception, as the interpreter does). What a fresh interpreter would
do differently: modules are already imported (their import-time state, e.g. environment variables
read at import, comes from the server's start). ``VIDEOATTN_TEST_FRESH_PYTHON=1`` runs every
command in a fresh interpreter instead (``subprocess``), to check that nothing depends on that.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import runpy
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FRESH = os.environ.get("VIDEOATTN_TEST_FRESH_PYTHON") == "1"
ENV = {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
PRELOAD = (
    "torch",
    "torchvision",
    "hydra",
    "omegaconf",
    "matplotlib.pyplot",
    "tqdm",
    "videoattn.data.video",
    "videoattn.models",
    "videoattn.data.build",
    "videoattn.engine.evaluate",
    "torch.distributed.run",
    "torch.utils.tensorboard",
    "pytest",
    "onnx",  # the deploy extra (~1 s per ONNX command); forkserver skips what is not installed
    "onnxscript",
    "onnxruntime",
    "videoattn.deploy.onnx",
)
_ctx = None


def _context():
    global _ctx
    if _ctx is None:
        _ctx = mp.get_context("forkserver")
        _ctx.set_forkserver_preload(list(PRELOAD))
    return _ctx


def _argv(cmd: Sequence[str | os.PathLike]) -> list[str]:
    argv = [os.fspath(a) for a in cmd]
    if argv and argv[0] in ("python", sys.executable):
        argv = argv[1:]
    return argv


def _child(argv: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """The forked process: become ``python ARGV`` and exit with its code."""
    import io
    import warnings

    mp.set_start_method(None, force=True)  # the platform's default again, as in a fresh interpreter (not forkserver)
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
    sys.stdin = open(os.devnull)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    if env.get("PYTHONWARNINGS") == "ignore":
        warnings.simplefilter("ignore")
    if "OMP_NUM_THREADS" in env:
        import torch

        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    code: int = 0
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path.insert(0, cwd)
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[0] == "-c":  # python -c CODE
            sys.argv = ["-c", *argv[2:]]
            sys.path.insert(0, "")
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            script = os.path.abspath(argv[0])
            sys.argv = argv
            sys.path.insert(0, os.path.dirname(script))
            runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


# The overrides of a tiny training run (a 4-frame, 8..64-channel ResNet on 48-pixel crops, one
# process, no progress bar or TensorBoard): what the command-line tests train with.
TINY_RUN = [
    "model.layers=[1,1,1,1]", "model.widths=[8,16,32,64]", "num_segments=4", "batch_size=4",
    "data.train_transform.size=48", "data.eval_transform.size=48", "data.eval_transform.resize=56",
    "workers=0", "progress=false", "tensorboard=false",
]  # fmt: skip


class Running:
    """A started command: ``pid``, ``poll()``, ``kill()``, ``wait()`` -> CompletedProcess."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args = argv
        self._dir = tempfile.TemporaryDirectory(prefix="videoattn-cli-")
        self._out, self._err = (os.path.join(self._dir.name, n) for n in ("stdout", "stderr"))
        if FRESH:
            self._proc = subprocess.Popen(
                [sys.executable, *argv],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=open(self._out, "w"),
                stderr=open(self._err, "w"),
            )
        else:
            self._proc = _context().Process(target=_child, args=(argv, env, str(cwd), self._out, self._err))
            self._proc.start()
        self.pid = self._proc.pid

    def poll(self) -> int | None:
        if FRESH:
            return self._proc.poll()
        return None if self._proc.is_alive() else self._proc.exitcode

    def kill(self) -> None:
        self._proc.kill()

    def wait(self, timeout: float | None = None) -> subprocess.CompletedProcess:
        if FRESH:
            code = self._proc.wait(timeout)
        else:
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
                raise subprocess.TimeoutExpired(self.args, timeout)
            code = self._proc.exitcode
        out, err = (Path(p).read_text(errors="replace") for p in (self._out, self._err))
        self._dir.cleanup()
        return subprocess.CompletedProcess(self.args, code, out, err)


def start(cmd: Sequence[str | os.PathLike], *, env: dict[str, str] | None = None, cwd: Path = REPO) -> Running:
    """Start ``python CMD`` (CMD: a script path relative to ``cwd`` or ``-m module``, then its
    arguments) with the test environment plus ``env``."""
    return Running(_argv(cmd), {**os.environ, **ENV, **(env or {})}, cwd)


def run(
    cmd: Sequence[str | os.PathLike], *, env: dict[str, str] | None = None, cwd: Path = REPO, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``python CMD`` to the end; the result has ``returncode``, ``stdout``, ``stderr``."""
    return start(cmd, env=env, cwd=cwd).wait(timeout)
