"""The first command on a new machine: what it offers a training run, and what will limit it.

    uv run python tools/doctor.py                                   # the demo config (configs/train.yaml)
    uv run python tools/doctor.py --config-name ssv2 data.root=/data/ssv2 model=tam
    uv run python tools/doctor.py --seconds 10 --json doctor.json   # longer measurements, and a JSON report
    uv run python tools/doctor.py --json - > doctor.json            # the JSON on stdout, the text on stderr

Prints the environment (Python, PyTorch and its CUDA / cuDNN / NCCL, the GPUs and the driver or
why CUDA cannot be used, TF32, the video decoders, /dev/shm, CPU cores, RAM, free disk where the
run writes and where the data is), then measures, for the same Hydra config as tools/train.py
(any override of train.py applies):

- training clips/s per precision (fp32, bf16, fp16, with channels_last on CUDA; fp32 and bf16 on
  the CPU; the config's own setting too): synthetic uint8 batches of the config's shape through
  the training step of tools/train.py, a few warm-up steps, then ``--seconds`` (or ``--steps``);
- the training loader's clips/s with the configured workers, backend and augmentation, from its
  first batch on, for ``--seconds`` (or ``--steps`` batches);

and ends with one line naming the bottleneck and what to change. Nothing is written but the
demo dataset (on first use, as train.py does) and the ``--json`` file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from videoattn.cli import ArgumentParser
from videoattn.compose import run_tool
from videoattn.data.build import (
    build_dataset,
    check_shared_memory,
    dataset_root,
    loader_options,
    normalize_data_config,
)
from videoattn.data.video import auto_backend
from videoattn.doctor import (
    bottleneck,
    busy_cpu,
    data_form,
    default_variants,
    environment,
    environment_lines,
    measure_loader,
    measure_training,
    split_variant,
    variant_name,
)
from videoattn.engine.device import configure_backends, select_device
from videoattn.engine.memory import cache_freed_memory
from videoattn.engine.optim import normalize_optim_config
from videoattn.errors import ConfigError
from videoattn.files import write_atomic

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Hydra's own flags that pass through to it (the doctor composes one config: no -m / --multirun)
HYDRA_FLAGS = {"--config-name", "-cn", "--config-dir", "-cd", "--config-path", "-cp"}
HYDRA_PRINTS = {"--cfg", "-c", "--resolve", "--package", "-p", "--info", "-i", "--hydra-help"}


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The doctor's flags, and the rest of ``argv`` for Hydra (overrides, ``--config-name``)."""
    p = ArgumentParser(
        prog="tools/doctor.py",
        description=__doc__,
        allow_abbrev=False,
        epilog="Hydra: --config-name NAME (train | ssv2 | ssv1 | kinetics) and key=value overrides, as tools/train.py",
    )
    p.add_argument("--seconds", type=float, default=3.0, help="time per measurement, after warm-up (default 3)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps / loader batches instead of --seconds")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps before each measurement (default 3)")
    p.add_argument(
        "--precisions",
        default=None,
        help="comma-separated variants to measure, e.g. fp32,bf16+channels_last (default: fp32,bf16,fp16 and their "
        "channels_last forms on CUDA; fp32,bf16 on the CPU; plus the config's own)",
    )
    p.add_argument("--no-training", action="store_true", help="skip the training measurement")
    p.add_argument("--no-loader", action="store_true", help="skip the loader measurement")
    p.add_argument("--json", metavar="PATH", default=None, help="write the report as one JSON object (- for stdout)")
    args, rest = p.parse_known_args(argv)
    if args.seconds <= 0:
        p.error(f"--seconds {args.seconds}: expected a positive number")
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps {args.steps}: expected a positive integer")
    if args.warmup < 0:
        p.error(f"--warmup {args.warmup}: expected an integer >= 0")
    it = iter(rest)
    for arg in it:  # what is neither ours nor an override must be one of Hydra's flags
        flag = arg.partition("=")[0]
        if flag in ("-m", "--multirun"):
            p.error(f"{arg}: the doctor measures one config; run it once per config")
        if flag in HYDRA_FLAGS and "=" not in arg:
            next(it, None)
        elif arg.startswith("-") and flag not in HYDRA_FLAGS | HYDRA_PRINTS:
            p.error(f"unrecognized argument {arg}")
    return args, rest


def main() -> None:
    """The doctor's flags, then the config composed once from the rest (as tools/train.py composes it)."""
    args, hydra_argv = parse_args(sys.argv[1:])
    run_tool(lambda cfg: doctor(cfg, args), config_dir=CONFIGS, config_name="train", argv=hydra_argv)


def doctor(cfg: DictConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Check the config and the data, print the report (on stderr with ``--json -``), return it."""
    out = sys.stderr if args.json == "-" else sys.stdout
    if args.json == "-":  # stdout holds the JSON only: the log records (Hydra's job_logging: stdout) go to stderr
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    # ---------------------------------------------------------------- the config, as tools/train.py reads it
    device = select_device(cfg.device)  # device=auto on a CUDA build without a usable GPU says why
    configure_backends(device, tf32=cfg.tf32, deterministic=cfg.deterministic)
    if device.type == "cpu" and cfg.malloc_cache:
        cache_freed_memory()
    data_cfg = normalize_data_config(cfg.data)
    optim_cfg = normalize_optim_config(cfg.optim)
    configured = variant_name(cfg.precision, cfg.channels_last)
    names = args.precisions.split(",") if args.precisions else default_variants(device, configured=configured)
    for name in names:
        split_variant(name)  # a typo fails now, not after the environment
    T, size = cfg.num_segments, data_cfg["train_transform"].get("size", 224)
    root = dataset_root(data_cfg)  # a missing data.root fails here, in one line; the demo is written on first use
    train_set = build_dataset(data_cfg, "train", mode="train", num_segments=T, seed=cfg.seed)
    item = train_set.probe()  # a transform that cannot apply to these videos fails now
    options = loader_options(
        data_cfg["backend"],
        workers=cfg.workers,
        pin_memory=device.type == "cuda",
        persistent=cfg.persistent_workers,
        prefetch=cfg.prefetch_factor,
    )
    form = data_form(train_set)
    backend = "frames" if form == "frames" else auto_backend() if data_cfg["backend"] == "auto" else data_cfg["backend"]
    report: dict[str, Any] = {
        "config": {
            "name": HydraConfig.get().job.config_name if HydraConfig.initialized() else None,
            "model": cfg.model.get("name"),
            "arch": cfg.model.arch,
            "data": data_cfg["name"],
            "source": data_cfg["source"],
            "root": str(root),
            "form": form,
            "backend": backend,
            "train_clips": len(train_set),
            "num_segments": T,
            "batch_size": cfg.batch_size,
            "crop": size,
            "workers": cfg.workers,
            "device": str(device),
            "precision": cfg.precision,
            "channels_last": cfg.channels_last,
            "compile": cfg.compile,
            "run_dir": cfg.run_dir,
        },
        "warnings": [],
    }

    # ---------------------------------------------------------------- environment
    env = environment(paths={"run_dir": cfg.run_dir, "data": root}, tf32=cfg.tf32)
    report["environment"] = env
    say("environment")
    for line in environment_lines(env):
        say(line)
    busy = busy_cpu(env)
    if busy:
        report["warnings"].append(busy)
        say(f"warning: {busy}")
    try:
        check_shared_memory(item, batch_size=cfg.batch_size, options=options)
        shm_ok = True
    except ConfigError as err:  # the loader would die of a bus error: say so, and do not run it
        report["warnings"].append(str(err))
        say(f"warning: {err}")
        shm_ok = False
    c = report["config"]
    say(
        f"config: model {c['model']} ({c['arch']}), data {c['data']} ({c['source']} {form} at {root}, read with "
        f"{backend}, {len(train_set)} train clips), T={T}, batch_size={cfg.batch_size}, crop {size}, "
        f"workers={cfg.workers}, device {device}, precision={cfg.precision}, channels_last="
        f"{str(cfg.channels_last).lower()}, compile={str(cfg.compile).lower()}"
    )

    # ---------------------------------------------------------------- training speed
    budget = f"{args.steps} steps" if args.steps else f"{args.seconds:g} s"
    training: list[dict[str, Any]] = []
    if not args.no_training:
        say(
            f"training: synthetic uint8 batches through the training step, {args.warmup} warm-up step(s), then {budget}"
            f" per precision{' (eager; compile=true is not measured)' if cfg.compile else ''}"
        )
        width = max(len(n) for n in names)
        for name in names:
            r = measure_training(
                cfg.model,
                num_classes=len(train_set.classes),
                num_segments=T,
                batch_size=cfg.batch_size,
                size=size,
                optim_cfg=optim_cfg,
                device=device,
                variant=name,
                seconds=args.seconds,
                steps=args.steps,
                warmup=args.warmup,
                log_every=cfg.log_every,
                seed=cfg.seed,
            )
            training.append(r)
            mark = " (the config's)" if name == configured else ""
            if r["clips_per_s"] is None:
                say(f"  {name:<{width}}  not measured: {r['error']}{mark}")
            else:
                memory = f", peak {r['peak_memory_gib']} GiB" if r["peak_memory_gib"] is not None else ""
                say(
                    f"  {name:<{width}}  {r['clips_per_s']:8.1f} clips/s  ({r['steps']} steps in "
                    f"{r['seconds']:.1f} s{memory}){mark}"
                )
    report["training"] = training

    # ---------------------------------------------------------------- loader speed
    loader = None
    if not args.no_loader and shm_ok:
        say(
            f"loader: the training split, {cfg.workers} worker(s), {form} read with {backend}, "
            f"{budget if not args.steps else f'{args.steps} batches'} after the first batch"
        )
        loader = measure_loader(
            train_set,
            batch_size=cfg.batch_size,
            options=options,
            seconds=args.seconds,
            batches=args.steps,
            seed=cfg.seed,
        )
        say(
            f"  {loader['clips_per_s']:.1f} clips/s  ({loader['batches']} batches in {loader['seconds']:.1f} s; "
            f"first batch after {loader['first_batch_s']:.1f} s)"
        )
    report["loader"] = loader

    # ---------------------------------------------------------------- the verdict
    report["bottleneck"] = None
    if not shm_ok:
        report["bottleneck"] = f"bottleneck: /dev/shm: {report['warnings'][-1]}"
    elif training:
        report["bottleneck"] = bottleneck(
            loader_clips_s=loader["clips_per_s"] if loader else None,
            training_clips_s={r["variant"]: r["clips_per_s"] for r in training},
            configured=configured,
            device=device.type,
            data_form=form,
            workers=cfg.workers,
            cores=env["cpu"]["cores"],
            processes=max(len(env["cuda"]["gpus"]), 1) if device.type == "cuda" else 1,
            source=data_cfg["source"],
            root=root,
            compile=cfg.compile,
            cuda_reason=env["cuda"]["reason"],
        )
    if report["bottleneck"]:
        say(report["bottleneck"])
    if args.json:
        text = json.dumps(report, indent=2, default=str) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            write_atomic(args.json, text)
            say(f"report: {args.json}")
    return report


if __name__ == "__main__":
    main()
