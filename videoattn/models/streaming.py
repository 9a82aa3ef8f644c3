"""Online inference: a :class:`VideoClassifier` run one frame at a time, as TSM's online model
(TSM: Temporal Shift Module for Efficient Video Understanding, arXiv 1811.08383).

A model streams when none of its inserted modules looks at future frames
(:func:`~videoattn.attention.streaming_blockers` is empty: static modules and causal temporal
ones such as ``tsm_online``). Each streaming module keeps a state from one frame to the next
(TSM's online shift: the first ``C // shift_div`` channels of the previous frame); the frame's
logits are the offline model's per-frame logits (:meth:`VideoClassifier.frame_logits`, before
the average over T) of that frame of the clip. The model itself is not changed: its modules
are read in order (:func:`~videoattn.attention.stream_modules`), and the states are handed to
them by :func:`videoattn.attention.streaming.stream` for one frame at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..attention import stream_modules, streaming_blockers
from ..attention.streaming import stream
from ..errors import ConfigError
from .classifier import VideoClassifier


class StreamingModel(nn.Module):
    """Per-frame logits of a streamable, eval-mode :class:`VideoClassifier`.

    :meth:`step` ``(N, 3, H, W) -> (N, K)``: one preprocessed frame of each of N clips streamed
    side by side, the states carried between calls (:meth:`reset` restarts every clip).
    ``forward(frame, states) -> (logits, new_states)`` (also :meth:`step_fn`) is the same step
    with the states as explicit tensors, one per streaming module in the order of
    :attr:`state_names` (:meth:`initial_states` gives the zeros to start from), for export: it
    writes no buffer and keeps nothing. A model with modules that cannot stream is refused with
    a :class:`~videoattn.errors.ConfigError` listing them.
    """

    def __init__(self, model: VideoClassifier) -> None:
        blockers = streaming_blockers(model)
        if blockers:
            by_reason: dict[str, list[str]] = {}
            for line in blockers:  # "<name>: <reason>", one per module
                name, reason = line.split(": ", 1)
                by_reason.setdefault(reason, []).append(name)
            raise ConfigError(
                f"this model cannot run one frame at a time ({len(blockers)} module(s) need the whole clip): "
                + "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items())
            )
        super().__init__()
        self.model = model
        named = stream_modules(model)
        self.state_names: list[str] = [name for name, _ in named]  # the modules' names in ``model``
        self._streaming = [m for _, m in named]  # a plain list: the modules stay ``model``'s
        self._check_eval()
        self.reset()

    @property
    def num_states(self) -> int:
        return len(self.state_names)

    def _check_eval(self) -> None:
        if self.model.training:
            raise ConfigError(
                "streaming needs the model in eval mode (call model.eval()): in training, BatchNorm "
                "mixes the frames of a batch and dropout is random"
            )

    @staticmethod
    def _check_frame(frame: Tensor) -> None:
        if frame.dim() != 4 or frame.shape[1] != 3:
            raise ValueError(
                f"a streaming step takes one frame of each clip, (N, 3, H, W); got {tuple(frame.shape)}. "
                "For whole clips (N, T, 3, H, W) use VideoClassifier.frame_logits."
            )

    def forward(self, frame: Tensor, states: Sequence[Tensor | None]) -> tuple[Tensor, list[Tensor]]:
        """One frame: ``frame`` ``(N, 3, H, W)`` and the streaming modules' states (in the order
        of :attr:`state_names`; None entries mean the first frame) -> the frame's logits
        ``(N, K)`` and the new states, in the same order."""
        self._check_eval()
        self._check_frame(frame)
        with stream(self._streaming, states) as new_states:
            logits, _ = self.model.classify_frames(frame)  # (N, 3, H, W) -> (N, K)
        return logits, list(new_states)

    def step_fn(self, frame: Tensor, states: Sequence[Tensor | None]) -> tuple[Tensor, list[Tensor]]:
        """The functional step, :meth:`forward`."""
        return self(frame, states)

    def initial_states(
        self, frame_shape: Sequence[int], *, dtype: torch.dtype | None = None, device: torch.device | None = None
    ) -> list[Tensor]:
        """Zeros of the shape of every state for frames of ``frame_shape`` ``(N, 3, H, W)``: the
        states of the first frame (the same as None), for the functional step. Shapes come from
        one step on a zero frame (TSM's shift: ``(N, C_i // shift_div, H_i, W_i)`` at module i)."""
        param = next(self.model.parameters())
        frame = torch.zeros(tuple(frame_shape), dtype=dtype or param.dtype, device=device or param.device)
        with torch.no_grad():
            _, states = self(frame, [None] * self.num_states)
        return [torch.zeros_like(s) for s in states]

    def step(self, frame: Tensor) -> Tensor:
        """The logits ``(N, K)`` of the next frame ``(N, 3, H, W)`` of each of N clips, the
        streaming modules' states carried to the next call (no autograd graph is kept)."""
        self._check_frame(frame)
        if self._frame_shape is not None and tuple(frame.shape) != self._frame_shape:
            raise ValueError(
                f"frame of shape {tuple(frame.shape)} in a stream of {self._frame_shape} frames: "
                "call reset() to start new clips"
            )
        with torch.no_grad():
            logits, self._states = self(frame, self._states)
        self._frame_shape = tuple(frame.shape)
        self.frames_seen += 1
        return logits

    @property
    def states(self) -> list[Tensor | None]:
        """The current states, in the order of :attr:`state_names` (None before the first frame)."""
        return list(self._states)

    def reset(self) -> None:
        """Start new clips: the next :meth:`step` is their first frame."""
        self._states: list[Tensor | None] = [None] * self.num_states
        self._frame_shape: tuple[int, ...] | None = None
        self.frames_seen = 0
