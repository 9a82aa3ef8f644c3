"""What every tool does with a user's mistake: one line, exit code 2, no traceback.

The command-line front end of the tools, and the one module of the package that writes to the
terminal and exits the process (:func:`fail`); the rest of the library raises and logs.

A tool wraps its work in :func:`user_errors`: a :class:`~videoattn.errors.UserError` (or an
operating-system error on a path the user named: missing, not permitted, a folder, disk full)
is printed as ``error: <message>`` on stderr and the process exits with code 2. Anything else
is a bug and keeps its traceback. ``VIDEOATTN_DEBUG=1`` (or Hydra's ``HYDRA_FULL_ERROR=1``, or
``--debug`` in the argparse tools) shows the traceback of user errors too.

A Hydra tool's ``main`` is :func:`videoattn.compose.run_tool`: the config composed once from the
command line, its mistakes in one line, the tool run inside :func:`user_errors`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from .errors import UserError

__all__ = [
    "ArgumentParser",
    "add_device_arguments",
    "add_trust_argument",
    "debug_enabled",
    "fail",
    "stop",
    "user_errors",
]

_USER_ERRNOS = {
    errno.ENOENT,
    errno.EACCES,
    errno.EPERM,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.ENOSPC,
    errno.EROFS,
    errno.EDQUOT,
    errno.ENAMETOOLONG,
}
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def debug_enabled() -> bool:
    """Whether user errors should show their traceback (``VIDEOATTN_DEBUG=1`` / ``HYDRA_FULL_ERROR=1``)."""
    return os.environ.get("VIDEOATTN_DEBUG") == "1" or os.environ.get("HYDRA_FULL_ERROR") == "1"


def stop(message: str, code: int) -> NoReturn:
    """Print ``message`` (one line) on stderr and exit with ``code``."""
    sys.stdout.flush()
    sys.stderr.write(f"{' '.join(str(message).split())}\n")
    sys.stderr.flush()
    raise SystemExit(code)


_KILLED_WORKER = (
    "a DataLoader worker was killed from outside this program (often the out-of-memory killer: see `dmesg`; "
    "fewer workers / a smaller batch_size / prefetch_factor use less memory); rerun the same command (a training "
    "resumes from its last checkpoint)"
)


def _killed_worker(err: BaseException) -> str | None:
    """The line for PyTorch's error when a DataLoader worker died of a signal, or None. A worker
    killed while it hands a batch's shared memory over ends the receiving side with a broken
    connection (``ConnectionResetError`` / ``EOFError`` in multiprocessing's resource sharer)."""
    text = " ".join(str(err).split())
    if (
        isinstance(err, RuntimeError)
        and "DataLoader worker" in text
        and ("killed by signal" in text or "exited unexpectedly" in text)
    ):
        return f"{text.split('. ')[0].rstrip('.')}: {_KILLED_WORKER}"
    if isinstance(err, (ConnectionError, EOFError)) and _raised_in(err, "multiprocessing/resource_sharer.py"):
        return f"a DataLoader worker's batch was lost in the handover ({type(err).__name__}: {text}): {_KILLED_WORKER}"
    return None


def _quiet_killed_worker_cleanup() -> None:
    """After the killed-worker line: the DataLoader iterator, collected on the way out, joins its
    workers and PyTorch's SIGCHLD handler raises the killed worker's error again inside ``__del__``
    ("Exception ignored in ... Traceback"). Drop that one; any other unraisable error is printed."""
    default = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not (isinstance(unraisable.exc_value, RuntimeError) and _killed_worker(unraisable.exc_value)):
            default(unraisable)

    sys.unraisablehook = hook


def _raised_in(err: BaseException, path_end: str) -> bool:
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.replace("\\", "/").endswith(path_end):
            return True
        tb = tb.tb_next
    return False


def fail(message: str) -> NoReturn:
    """Print ``error: message`` (one line) on stderr and exit with code 2."""
    sys.stdout.flush()
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    sys.stderr.flush()
    raise SystemExit(2)


def _os_message(err: OSError) -> str:
    where = err.filename or ""
    if err.errno in _DISK_FULL:
        return f"{where or 'a file'}: the disk is full ({err.strerror}); free some space and run again"
    return f"{where}: {err.strerror}" if where else str(err)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn user errors raised in the block into one line + exit code 2 (see the module doc); an
    interruption (Ctrl-C, SIGTERM) into one line + exit code 130 / 143; a DataLoader worker killed
    from outside (the out-of-memory killer, ``kill``) into one line + exit code 1."""
    from .engine.interrupt import Interrupted

    try:
        yield
    except Interrupted as err:
        stop(f"interrupted: {err.where}", 128 + err.signum)
    except KeyboardInterrupt:  # a tool without safe points: the signal stops it where it is
        stop("interrupted (SIGINT)", 130)
    except UserError as err:
        if debug_enabled():
            raise
        fail(_message(err))
    except (OSError, EOFError) as err:
        worker = _killed_worker(err)
        if worker and not debug_enabled():
            _quiet_killed_worker_cleanup()
            stop(f"error: {worker}", 1)
        if debug_enabled() or not isinstance(err, OSError) or err.errno not in _USER_ERRNOS:
            raise
        fail(_os_message(err))
    except RuntimeError as err:  # torch.save reports a full disk as "[enforce fail ...] unexpected pos"
        worker = _killed_worker(err)
        if worker and not debug_enabled():
            _quiet_killed_worker_cleanup()
            stop(f"error: {worker}", 1)
        if debug_enabled() or not _is_disk_full(err):
            raise
        fail(
            f"writing a file failed because the disk is full ({' '.join(str(err).split())[:120]}); "
            "free some space and run again"
        )


def _message(err: BaseException) -> str:
    """The error's text; for one a DataLoader worker raised (PyTorch re-raises it with the
    worker's traceback in the message), the original message, the traceback's last line."""
    text = str(err)
    if "\nOriginal Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text


def _is_disk_full(err: BaseException) -> bool:
    while err is not None:
        if isinstance(err, OSError) and err.errno in _DISK_FULL:
            return True
        err = err.__cause__ or err.__context__
    return False


class _Debug(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kw) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kw)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        os.environ["VIDEOATTN_DEBUG"] = "1"
        setattr(namespace, self.dest, True)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line (exit code 2), with ``--debug``."""

    def __init__(self, *args, **kw) -> None:
        kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kw)
        self.add_argument("--debug", action=_Debug, help="show the traceback of errors (same as VIDEOATTN_DEBUG=1)")

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")


def add_device_arguments(
    parser: argparse.ArgumentParser,
    *,
    what: str,
    default: str = "auto",
    tf32: bool | None = True,
    tf32_default: str | None = None,
) -> None:
    """``--device auto|cpu|cuda`` and ``--tf32 / --no-tf32``, spelled as in every argparse tool
    (the Hydra tools' ``device`` and ``tf32`` keys). ``what`` says what runs on the device in this
    tool; ``tf32_default`` says the default of ``--tf32`` in words (needed when ``tf32`` is None:
    the tool decides). The tool resolves the device with :func:`videoattn.engine.device.select_device`
    (a wrong value is an argparse error here)."""
    from .engine.device import DEVICES

    parser.add_argument(
        "--device",
        choices=DEVICES,
        default=default,
        help=f"{what}; auto: the GPU if CUDA works, else the CPU with a warning saying why (default: {default})",
    )
    parser.add_argument(
        "--tf32",
        action=argparse.BooleanOptionalAction,
        default=tf32,
        help="CUDA fp32 matmuls and convolutions in TF32 (10 mantissa bits, ~8x the fp32 matmul rate on Ampere and "
        f"later); --no-tf32: IEEE fp32 (default: {tf32_default or ('on' if tf32 else 'off')})",
    )


def add_trust_argument(parser: argparse.ArgumentParser, *, what: str = "--checkpoint") -> None:
    """``--trust-checkpoint``, spelled as in every argparse tool that reads checkpoints (the Hydra
    tools' ``trust_checkpoint=true``); the tool runs its reads in
    :func:`videoattn.checkpoint.trust_checkpoints` with it."""
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help=f"load {what} even if it pickles Python objects beyond tensors, plain data and the allowlisted "
        "ones (numpy scalars, argparse.Namespace): a full unpickle, which runs any code the file carries; only "
        "for a file whose source you trust (a warning names it). Default: such a file is refused",
    )
