"""Context Encoding for Semantic Segmentation (Zhang, Dana, Shi, Zhang, Wang, Tyagi, Agrawal;
arXiv 1803.08904): the context-encoding module (EncModule) and its SE-loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Encoding(nn.Module):
    """Encoding layer: residuals to K learnable codewords, soft-assigned, aggregated.

    For descriptors ``x_i`` (the H*W positions) and codewords ``d_k`` with smoothing factors
    ``s_k``: ``a_ik = softmax_k(-s_k ||x_i - d_k||^2)`` (the official code stores
    ``scale = -s_k``, initialised uniform in [-1, 0)) and ``e_k = sum_i a_ik (x_i - d_k)``.
    Codewords are initialised uniform in ``+-1/sqrt(K*D)``. ``(B, D, H, W) -> (B, K, D)``.
    """

    def __init__(self, channels: int, num_codes: int) -> None:
        super().__init__()
        self.channels, self.num_codes = channels, num_codes
        self.codewords = nn.Parameter(torch.empty(num_codes, channels))
        self.scale = nn.Parameter(torch.empty(num_codes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.num_codes * self.channels)
        nn.init.uniform_(self.codewords, -bound, bound)
        nn.init.uniform_(self.scale, -1.0, 0.0)

    def forward(self, x: Tensor) -> Tensor:
        feats = x.flatten(2).transpose(1, 2)  # (B, D, H, W) -> (B, M, D)
        # ||x_i - d_k||^2 = ||x_i||^2 - 2 x_i.d_k + ||d_k||^2, without the (B, M, K, D) tensor
        dist = (
            feats.pow(2).sum(-1, keepdim=True) - 2 * feats @ self.codewords.t() + self.codewords.pow(2).sum(-1)
        )  # (B, M, K)
        assign = torch.softmax(dist * self.scale, dim=-1)  # (B, M, K)
        # e_k = sum_i a_ik x_i - (sum_i a_ik) d_k
        return assign.transpose(1, 2) @ feats - assign.sum(1)[..., None] * self.codewords  # (B, K, D)


class EncModule(nn.Module):
    """Context-encoding module: a channel gate from an encoded global context, plus SE-loss.

    ``e = mean_k relu(BN1d(Encoding(relu(BN(conv1x1(x))))))``, ``gamma = sigmoid(fc(e))`` (FC
    with bias) and ``y = relu(x + x * gamma)``. With ``num_classes`` set (the registry takes it
    from the model), ``se_head`` (Linear ``C -> K`` classes) predicts from ``e`` which classes
    are present, and :meth:`aux_loss` is the SE-loss, ``se_loss_weight * se_loss(...)`` (binary
    cross-entropy against the class presence, the one-hot label for classification; EncNet's
    weight 0.2), which the training loop adds. ``forward`` returns only ``y``;
    :meth:`forward_with_aux` also returns the SE logits. In the backbone it is a head module
    (after the last stage), as in EncNet.
    """

    def __init__(
        self, channels: int, *, num_codes: int = 32, num_classes: int | None = None, se_loss_weight: float = 0.2
    ) -> None:
        super().__init__()
        self.se_loss_weight = float(se_loss_weight)
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.encoding = Encoding(channels, num_codes)
        self.code_bn = nn.BatchNorm1d(num_codes)
        self.fc = nn.Linear(channels, channels)
        self.se_head = nn.Linear(channels, num_classes) if num_classes else None

    def encode(self, x: Tensor) -> Tensor:
        """The encoded context ``(B, C, H, W) -> (B, C)``."""
        z = F.relu(self.bn(self.conv(x)))  # (B, C, H, W)
        codes = F.relu(self.code_bn(self.encoding(z)))  # (B, K, C)
        return codes.mean(1)  # (B, C)

    def forward_with_aux(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(B, C, H, W) -> (B, C, H, W)`` and the SE logits ``(B, K)`` (None without ``num_classes``)."""
        e = self.encode(x)  # (B, C)
        gamma = torch.sigmoid(self.fc(e))[..., None, None]  # (B, C, 1, 1)
        y = F.relu(x + x * gamma)
        return y, (self.se_head(e) if self.se_head is not None else None)

    def aux_loss(self, se_logits: Tensor, labels: Tensor) -> Tensor:
        """The weighted SE-loss of the clip-level SE logits ``(N, K)`` for labels ``(N,)``."""
        return self.se_loss_weight * se_loss(se_logits.float(), labels)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_aux(x)[0]


def se_loss(se_logits: Tensor, labels: Tensor) -> Tensor:
    """EncNet's semantic-encoding loss: BCE between the SE logits ``(N, K)`` and the presence
    of each class; for single-label clips the presence vector is the one-hot label ``(N,)``."""
    target = F.one_hot(labels, se_logits.shape[-1]).to(se_logits.dtype)
    return F.binary_cross_entropy_with_logits(se_logits, target)
