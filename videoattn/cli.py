"""What every tool does with a user's mistake: one line, exit code 2, no traceback.

The command-line front end of the tools, and the one module of the package that writes to the
terminal and exits the process (:func:`fail`); the rest of the library raises and logs.

A tool wraps its work in :func:`user_errors`: a :class:`~videoattn.errors.UserError` (or an
operating-system error on a path the user named: missing, not permitted, a folder, disk full)
is printed as ``error: <message>`` on stderr and the process exits with code 2. Anything else
is a bug and keeps its traceback. ``VIDEOATTN_DEBUG=1`` (or Hydra's ``HYDRA_FULL_ERROR=1``, or
``--debug`` in the argparse tools) shows the traceback of user errors too.

A Hydra tool's ``main`` is :func:`run_tool`: it composes the config once from the command line
with Hydra's compose API (:func:`compose_jobs`), so that an unknown key, an unknown config group
option, a malformed override, a value of the wrong type or out of range, or a required value
left out is reported in one line (Hydra itself prints a multi-line report and exits with code 1),
and runs the tool on that config, the checked one.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import errno
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .config import check_config, describe_error
from .errors import UserError

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = [
    "ArgumentParser",
    "add_device_arguments",
    "add_trust_argument",
    "check_overrides",
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


def _killed_worker(err: RuntimeError) -> str | None:
    """The line for PyTorch's error when a DataLoader worker died of a signal, or None."""
    text = " ".join(str(err).split())
    if "DataLoader worker" not in text or not ("killed by signal" in text or "exited unexpectedly" in text):
        return None
    return (
        f"{text.split('. ')[0].rstrip('.')}: a DataLoader worker was killed from outside this program (often the "
        "out-of-memory killer: see `dmesg`; fewer workers / a smaller batch_size / prefetch_factor use less memory); "
        "rerun the same command (a training resumes from its last checkpoint)"
    )


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
    except OSError as err:
        if debug_enabled() or err.errno not in _USER_ERRNOS:
            raise
        fail(_os_message(err))
    except RuntimeError as err:  # torch.save reports a full disk as "[enforce fail ...] unexpected pos"
        worker = _killed_worker(err)
        if worker and not debug_enabled():
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


# ----------------------------------------------------------------------------- Hydra command lines
_VALUE_FLAGS = {"--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd"}
_SKIP_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--version",
    "--shell-completion",
    "-sc",
    "--resolve",
    "--package",
    "-p",
    "--experimental-rerun",
}


def run_tool(
    task: Callable[[DictConfig], object],
    *,
    config_dir: str | os.PathLike,
    config_name: str,
    argv: Sequence[str] | None = None,
    refuse: Mapping[str, str] | None = None,
) -> None:
    """A Hydra tool's ``main``: compose its config once from the command line (:func:`compose_jobs`:
    a mistake is one line, exit code 2), set up Hydra's job logging and :class:`HydraConfig` as
    ``@hydra.main`` would, and run ``task(cfg)`` inside :func:`user_errors`; with ``-m``, once per
    job of the sweep, one after the other (as Hydra's basic launcher runs them). Hydra's own flags
    that print instead of running (``--help``, ``--cfg``, ...), an unknown flag and another primary
    config folder (``--config-path``) go to ``@hydra.main`` itself, which then composes (once)."""
    import hydra

    argv = list(sys.argv[1:] if argv is None else argv)
    jobs = compose_jobs(config_dir, config_name, argv, refuse=refuse)
    if jobs is None:
        sys.argv = [sys.argv[0], *argv]

        def hydra_task(cfg: DictConfig) -> None:
            with user_errors():
                task(cfg)

        entry = hydra.main(config_path=str(Path(config_dir).resolve()), config_name=config_name, version_base=None)
        entry(hydra_task)()
        return
    for cfg, hydra_cfg in jobs:
        _start_job(cfg, hydra_cfg)
        with user_errors():
            task(cfg)


def _start_job(cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """What ``@hydra.main`` does before the task: :class:`HydraConfig` set (the overrides, the
    config name; ``hydra_cfg`` holds the ``hydra`` node) and the job's logging configured
    (``hydra/job_logging``, ``hydra.verbose``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import configure_log

    HydraConfig.instance().set_config(hydra_cfg)
    configure_log(hydra_cfg.hydra.job_logging, hydra_cfg.hydra.verbose)


def check_overrides(
    config_dir: str | os.PathLike,
    config_name: str,
    argv: Sequence[str] | None = None,
    *,
    refuse: Mapping[str, str] | None = None,
) -> DictConfig | None:
    """The config a Hydra tool runs with for ``argv`` (of the first job of a sweep), composed and
    checked by :func:`compose_jobs` (a mistake: one line, exit code 2); None where Hydra's own
    flags (``--help``, ``--cfg``, ...) leave nothing to compose. The one load of the tools
    (:func:`run_tool`), for tests and in-process callers."""
    jobs = compose_jobs(config_dir, config_name, argv, refuse=refuse)
    return None if jobs is None else jobs[0][0]


def compose_jobs(
    config_dir: str | os.PathLike,
    config_name: str,
    argv: Sequence[str] | None = None,
    *,
    refuse: Mapping[str, str] | None = None,
) -> list[tuple[DictConfig, DictConfig]] | None:
    """Compose the config of a Hydra tool from ``argv`` (default ``sys.argv[1:]``) with Hydra's
    compose API, once per job (``-m``: every combination of the sweep values), and exit with one
    line and code 2 if Hydra would reject it, if a required value (``???``) is left out, if a
    value is out of its schema's range, or if ``+key=value`` adds a top-level key (nothing reads
    those: the sections ``model``, ``data``, ``optim`` check their own keys). ``refuse`` maps
    keys (and their sub-keys) that the tool cannot apply to the reason, given when an override
    names one. Returns ``(config, hydra config)`` per job, or None where Hydra's own flags that
    print instead of running (``--help``, ``--cfg``, ...), an unknown flag or another primary
    config folder leave the command line to Hydra. The schemas and the registry's model configs
    are registered with Hydra first (:func:`videoattn.engine.config.register_configs`)."""
    from .engine.config import register_configs

    register_configs(config_dir)
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides, multirun, config_dirs = [], False, [str(config_dir)]
    it = iter(argv)
    for arg in it:
        flag, _, inline = arg.partition("=")
        if flag in _SKIP_FLAGS or (flag.startswith("-") and flag not in _VALUE_FLAGS | {"-m", "--multirun"}):
            return None  # Hydra prints something else, or reports the unknown flag itself
        if flag in ("-m", "--multirun"):
            multirun = True
        elif flag in _VALUE_FLAGS:
            value = inline or next(it, "")
            if flag in ("--config-name", "-cn"):
                config_name = value
            elif flag in ("--config-dir", "-cd"):
                config_dirs.append(value)
            else:
                return None  # another primary config folder: let Hydra resolve it
        else:
            overrides.append(arg)
    with user_errors():
        _refused(overrides, refuse or {})
        return [_compose(config_dirs, config_name, job) for job in _jobs(overrides, multirun)]


def _refused(overrides: list[str], refuse: Mapping[str, str]) -> None:
    for o in overrides:
        key = o.lstrip("+~").partition("=")[0]
        for name, reason in refuse.items():
            if key == name or key.startswith(name + "."):
                fail(f"{o}: {reason}")


def _jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists to compose: as given; with ``-m``, every combination of the sweep values
    (in the order of Hydra's basic sweeper)."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    if not multirun:
        return [overrides]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        fail(_first_lines(err))
    lists = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() else [o.input_line]
        for o in parsed
    ]
    return [list(job) for job in itertools.product(*lists)]


def _compose(config_dirs: list[str], config_name: str, overrides: list[str]) -> tuple[DictConfig, DictConfig]:
    """One job's config, composed and checked (see :func:`compose_jobs`), and its ``hydra`` node
    apart (a config of its own: the tool's config has no ``hydra`` key)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    searchpath = [f"file://{Path(d).resolve()}" for d in config_dirs[1:]]
    extra = [f"hydra.searchpath=[{','.join(searchpath)}]"] if searchpath else []
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dirs[0]).resolve()), version_base=None):
            cfg = compose(config_name, overrides=[*overrides, *extra], return_hydra_config=True)
    except MissingConfigException as err:
        fail(_missing_config(err, config_name, overrides))
    except (HydraException, OmegaConfBaseException) as err:
        typed = _validation_cause(err)
        fail(describe_error(typed) if typed is not None else _override_error(err, overrides))
    finally:
        GlobalHydra.instance().clear()
    hydra_cfg = OmegaConf.masked_copy(cfg, "hydra")  # {hydra: HydraConf}, as HydraConfig takes it
    with open_dict(cfg):
        cfg.pop("hydra")
    _added_top_level_keys(cfg, overrides)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        fail(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: pass "
            + " ".join(f"{k}=..." for k in missing)
            + f" on the command line (see configs/{config_name}.yaml)"
        )
    check_config(cfg)  # the schema's range checks (num_segments >= 1, ...): the one check of the run's config
    return cfg, hydra_cfg


def _validation_cause(err: BaseException):
    """The OmegaConf type error (a value that does not convert to its key's type) behind a
    Hydra composition error, if that is what it is."""
    from omegaconf.errors import ValidationError

    while err is not None:
        if isinstance(err, ValidationError) and getattr(err, "full_key", None):
            return err
        err = err.__cause__ or err.__context__
    return None


def _added_top_level_keys(cfg: DictConfig, overrides: list[str]) -> None:
    """Fail on ``+key=value`` that adds a top-level key (the tool would run without reading it)
    and on ``~key`` that deletes one (the tool reads every one of them)."""
    import dataclasses

    from omegaconf import OmegaConf

    for o in overrides:
        key = o.lstrip("~").partition("=")[0]
        if o.startswith("~") and "." not in key:
            fail(f"{o}: removes the top-level key {key!r}, which the tool reads; set it instead ({key}=...)")
    schema = OmegaConf.get_type(cfg)
    known = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else set(cfg)
    added = [o for o in overrides if o.startswith("+") and o.lstrip("+").partition("=")[0] not in known | {"hydra"}]
    added = [o for o in added if "." not in o.lstrip("+").partition("=")[0]]
    if not added:
        return
    tree = OmegaConf.to_container(cfg, resolve=False)
    leaves = _leaf_paths({k: v for k, v in tree.items() if k in known})
    names = {p.rsplit(".", 1)[-1]: p for p in leaves}
    o = added[0]
    key = o.lstrip("+").partition("=")[0]
    close = [names[c] for c in difflib.get_close_matches(key, list(names), n=3)]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    fail(f"{o}: adds a key {key!r} that nothing reads{hint}; the config's keys are listed by --cfg job")


def _leaf_paths(node, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [p for k, v in node.items() if k != "hydra" for p in _leaf_paths(v, f"{prefix}{k}.")]
    return [prefix[:-1]]


def _first_lines(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    cause = err.__cause__
    extra = str(cause).strip().splitlines()[:1] if cause is not None else []
    return "; ".join(line.strip() for line in [*text[:2], *extra] if line.strip())


def _missing_config(err: BaseException, config_name: str, overrides: list[str]) -> str:
    options = getattr(err, "options", None) or []
    group = None
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if f"'{key}/{value}'" in str(err):
            group = (key, value)
            break
    if group is None:
        return _first_lines(err)
    key, value = group
    close = difflib.get_close_matches(value, options, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"{key}={value}: no such {key} config{hint}; available: {', '.join(options)}"


def _override_error(err: BaseException, overrides: list[str]) -> str:
    """One line for a composition error that is not a type error: the malformed override, or the
    key the schema there lacks (from the error's key and schema: the close names of that schema)."""
    import dataclasses

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(err, OverrideParseException):
        parser = OverridesParser.create()
        for o in overrides:
            try:
                parser.parse_overrides([o])
            except OverrideParseException as one:
                return (
                    f"{o}: not a valid override ({str(one).splitlines()[0]}); write key=value, +key=value to add a key"
                )
        return _first_lines(err)
    keys = {o: o.lstrip("+~").partition("=")[0] for o in overrides}
    cause, missing = err.__cause__, getattr(err.__cause__, "full_key", None)
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and missing:  # a key its schema lacks
        schema = getattr(cause, "object_type", None)
        names = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else []
        where, _, leaf = missing.rpartition(".")
        close = [f"{where}.{c}" if where else c for c in difflib.get_close_matches(leaf, names, n=3)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        plain = missing.replace("[", ".").replace("]", "")  # model.inserts[0].foo -> model.inserts.0.foo
        named = [o for o, k in keys.items() if k == plain or k.startswith(plain + ".")]
        return f"{named[0] + ': ' if named else ''}the config has no key {missing!r}{hint}"
    named = [o for o, k in keys.items() if f"'{k}'" in str(err)]
    return f"{named[0]}: {_first_lines(err)}" if named else _first_lines(err)
