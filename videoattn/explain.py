"""What the excitation modules did to one clip.

Every slot container (``att_input`` / ``att_after_conv1`` / ``att_before_last`` /
``att_output``) maps a feature map ``x`` to ``y``; :func:`trace_excitation` records, for each
of them, the gain ``||y|| / ||x||``

- per frame, ``(T,)``: how the module re-weights the frames of the clip (temporal modules:
  TSM's shift moves channels across frames, ACTION's and TAM's gates change over T);
- per channel, ``(C,)``: for static modules (SE, ECA, ...) their channel gates (the sigmoid
  gates themselves when the module is a pure channel gate); for temporal ones what mixing the
  frames did to each channel (TSM: the shifted channels hold their neighbours' features).

and :func:`summarize` averages them per stage. :func:`plot_explanation` draws the sampled
frames, the top-k prediction and these gains into one figure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .shapes import split_time


@dataclass
class SlotTrace:
    name: str  # e.g. "layer2.1.att_input"
    modules: str  # the registry names inserted there, e.g. "tsm"
    stage: int  # 1..4 (0 for the MobileNetV2 trunk's blocks without a stage)
    frame_gain: Tensor  # (T,)
    channel_gain: Tensor  # (C,)


def _stage_of(name: str) -> int:
    for part in name.split("."):
        if part.startswith("layer") and part[5:].isdigit():
            return int(part[5:])
    return 0


@torch.no_grad()
def trace_excitation(model: nn.Module, clip: Tensor) -> tuple[Tensor, list[SlotTrace]]:
    """Run ``model`` on one clip ``(1, T, 3, H, W)`` (on the model's device); return its logits
    ``(1, K)`` and the gains of every slot container with inserted modules (host tensors)."""
    from .models.resnet import Inserts

    t = clip.shape[1]
    traces: list[SlotTrace] = []
    hooks = []

    def hook(name: str, module: nn.Module):
        def fn(_m: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            x = split_time(inputs[0].float(), t)[0]  # (1*T, C, H, W) -> (T, C, H, W)
            y = split_time(output.float(), t)[0]
            frame = y.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(1e-12)  # (T,)
            chan = y.abs().mean((0, 2, 3)) / x.abs().mean((0, 2, 3)).clamp_min(1e-12)  # (C,)
            traces.append(  # on the host, where the plot reads them, whatever the model's device
                SlotTrace(
                    name, "+".join(n for n, _ in module.named_children()), _stage_of(name), frame.cpu(), chan.cpu()
                )
            )

        return fn

    for name, module in model.named_modules():
        if isinstance(module, Inserts):
            hooks.append(module.register_forward_hook(hook(name, module)))
    try:
        model.eval()
        logits = model(clip)
    finally:
        for h in hooks:
            h.remove()
    return logits, traces


def summarize(traces: Sequence[SlotTrace]) -> dict[int, dict[str, Tensor]]:
    """Per stage: the mean frame gain ``(T,)`` over its slots, and the channel gains of all its
    slots concatenated ``(sum C,)``."""
    by_stage: dict[int, list[SlotTrace]] = defaultdict(list)
    for tr in traces:
        by_stage[tr.stage].append(tr)
    return {
        s: {
            "frame_gain": torch.stack([t.frame_gain for t in trs]).mean(0),
            "channel_gain": torch.cat([t.channel_gain for t in trs]),
        }
        for s, trs in sorted(by_stage.items())
    }


def plot_explanation(
    path: str,
    frames: Tensor,
    top: Sequence[tuple[str, float]],
    traces: Sequence[SlotTrace],
    *,
    title: str = "",
) -> None:
    """One PNG: the ``T`` sampled frames ``(T, 3, H, W)`` uint8, the top-k bar chart, the
    per-stage frame gains (a stage x T heat map) and the per-stage channel-gain distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    t = frames.shape[0]
    stats = summarize(traces)
    fig = plt.figure(figsize=(max(10, 1.6 * t), 9), constrained_layout=True)
    # three rows laid out independently: the frames keep their width whatever the plots below need
    row_frames, row_plots, row_channels = fig.subfigures(3, 1, height_ratios=[1.0, 1.3, 1.0])
    for i, ax in enumerate(row_frames.subplots(1, t, squeeze=False)[0]):
        ax.imshow(frames[i].permute(1, 2, 0).numpy())
        ax.set_title(f"t={i}", fontsize=8)
        ax.axis("off")
    ax, heat = row_plots.subplots(1, 2, width_ratios=[1, 1.3])
    names = [n for n, _ in top][::-1]
    ax.barh(range(len(names)), [p for _, p in top][::-1], color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    ax.set_title("prediction")
    modules = sorted({tr.modules for tr in traces})
    if stats:
        gains = torch.stack([v["frame_gain"] for v in stats.values()]).numpy()  # (stages, T)
        # diverging around 1: red amplified, blue attenuated, white unchanged
        norm = TwoSlopeNorm(vcenter=1.0, vmin=min(float(gains.min()), 0.99), vmax=max(float(gains.max()), 1.01))
        im = heat.imshow(gains, aspect="auto", cmap="coolwarm", norm=norm)
        heat.set_yticks(range(len(stats)), [f"stage {s}" for s in stats])
        heat.set_xticks(range(t))
        heat.set_xlabel("frame t")
        heat.set_title(f"per-frame gain ||out|| / ||in|| of {', '.join(modules)}")
        row_plots.colorbar(im, ax=heat, label="gain: > 1 amplified, < 1 attenuated")
    else:
        heat.text(0.5, 0.5, "no excitation modules (TSN)", ha="center", va="center")
        heat.axis("off")
    ax = row_channels.subplots()
    if stats:
        ax.boxplot([v["channel_gain"].numpy() for v in stats.values()], showfliers=False)
        ax.set_xticks(range(1, len(stats) + 1), [f"stage {s}" for s in stats])
        ax.axhspan(1.0, ax.get_ylim()[1], color="tab:red", alpha=0.08, label="> 1: channel amplified")
        ax.axhspan(ax.get_ylim()[0], 1.0, color="tab:blue", alpha=0.08, label="< 1: channel attenuated")
        ax.axhline(1.0, color="0.3", linewidth=0.8, linestyle="--", label="1: unchanged")
        ax.set_ylabel("per-channel gain")
        ax.legend(loc="upper right", fontsize=8)
        # a gate's gains for a static module (SE, ECA, ...); what a temporal module's mixing of frames leaves per
        # channel (TSM: the shifted channels now hold the neighbours' features)
        ax.set_title(f"per-channel gain mean |out| / mean |in| of {', '.join(modules)}, per stage (box: quartiles)")
    else:
        ax.axis("off")
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)
