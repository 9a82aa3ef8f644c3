"""Train a video classifier (TSN / TSM / TAM / ACTION-Net / any excitation by name).

    uv run python tools/train.py                                  # TSM on the built-in demo data
    uv run python tools/train.py model=tsn                        # ... the same without temporal modelling
    uv run python tools/train.py --config-name ssv2 data.root=/data/ssv2 model=tam
    torchrun --nproc_per_node 8 tools/train.py --config-name ssv2 data.root=/data/ssv2 model=tam

The run itself is the engine's, read top to bottom in videoattn/engine/fit.py (config ->
processes -> run folder -> data -> model -> resume -> optimiser -> epochs -> summary). One
training at a time writes a run folder (a lock names the one that holds it). Every epoch writes
RUN_DIR/last.pth atomically (keeping the one before it as last.1.pth), then best.pth on a new best
val top-1, metrics.csv and results.json; RUN_DIR/train.log holds the run's log, every epoch line
and the result line included. `resume=auto` (the default) continues from last.pth after any
interruption, with the same data order, augmentation and RNG state as an uninterrupted run, and
repairs what a kill left. Starting again from scratch in a folder that holds a run takes
`resume=none overwrite=true`. The progress bar shows when stderr is a terminal (`progress=true`);
redirected (`> log 2>&1`), the epoch lines are the progress.
"""

from __future__ import annotations

from pathlib import Path

from videoattn.compose import run_tool
from videoattn.engine.fit import fit

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def main() -> None:
    """Compose the config once from the command line (a mistake: one line, exit 2), then train
    (a user's mistake or an interruption: one line; ``-m``: each job of the sweep in turn)."""
    run_tool(fit, config_dir=CONFIGS, config_name="train")


if __name__ == "__main__":
    main()
