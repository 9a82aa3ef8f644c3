"""The Hydra tools' one composition: :func:`run_tool` is a Hydra tool's ``main``.

It composes the config once from the command line with Hydra's compose API (:func:`compose_jobs`),
so that an unknown key, an unknown config group option, a malformed override, a value of the
wrong type or out of range, or a required value left out is reported in one line and exit code 2
(Hydra itself prints a multi-line report and exits with code 1), sets up Hydra's job logging and
``HydraConfig`` as ``@hydra.main`` would, and runs the tool on that config, the checked one
(:func:`videoattn.config.check_config`), which the library trusts. ``-m`` runs the jobs of a sweep
one after the other, each composed once. Hydra's own flags that print instead of running
(``--help``, ``--cfg``, ...) go to ``@hydra.main``.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .cli import fail, user_errors
from .config import check_config, describe_error

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = ["check_overrides", "compose_jobs", "run_tool"]

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

        hydra_task.__module__ = Path(sys.argv[0]).stem  # Hydra names the job (--help: "train is powered by")

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
            overrides.append(_home(arg))
    with user_errors():
        _refused(overrides, refuse or {})
        return [_compose(config_dirs, config_name, job) for job in _jobs(overrides, multirun)]


def _home(override: str) -> str:
    """``key=~/path`` (which the shell leaves as it is, and Hydra's grammar refuses) with the home
    folder expanded, quoted for Hydra: ``data.root=~/my_videos`` works as typed."""
    key, eq, value = override.partition("=")
    if not eq or not key or not value.startswith("~"):
        return override
    path = os.path.expanduser(value)
    if path == value:  # ~unknown_user: left to Hydra's message
        return override
    return f"{key}='" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"


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
