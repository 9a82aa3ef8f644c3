"""Reference formulations of every registered module, written from the papers' math.

Each takes the module (for its parameters) and an input, and recomputes the output the
straightforward way: the official code's tensor layouts (permute + Conv1d shift, grouped
conv2d for TAM, full-resolution motion differences), explicit formulas (DCT cosines,
``torch.cov``, broadcasted codeword residuals, outer products). The optimised library code
must agree with them. BatchNorm is taken in eval mode (running statistics).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def bn_eval(x: Tensor, bn: nn.Module) -> Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


# --------------------------------------------------------------------------- temporal
def tsm(m, x: Tensor) -> Tensor:
    """The TSM paper's slicing formula on (N, T, C, H, W)."""
    nt, c, h, w = x.shape
    t = m.num_segments
    v = x.view(nt // t, t, c, h, w)
    fold = c // m.shift_div
    out = torch.zeros_like(v)
    out[:, :-1, :fold] = v[:, 1:, :fold]
    out[:, 1:, fold : 2 * fold] = v[:, :-1, fold : 2 * fold]
    out[:, :, 2 * fold :] = v[:, :, 2 * fold :]
    return out.view(nt, c, h, w)


def tsm_online(m, x: Tensor) -> Tensor:
    """TSM's online (uni-directional) shift: the first C // shift_div channels of frame t are
    those of frame t-1 (zeros at t = 0), the rest unchanged; frame by frame."""
    nt, c, h, w = x.shape
    t = m.num_segments
    v = x.view(nt // t, t, c, h, w)
    fold = c // m.shift_div
    frames = []
    for i in range(t):
        past = v[:, i - 1, :fold] if i > 0 else torch.zeros_like(v[:, 0, :fold])
        frames.append(torch.cat([past, v[:, i, fold:]], dim=1))
    return torch.stack(frames, 1).view(nt, c, h, w)


def action(m, x: Tensor) -> Tensor:
    """ACTION-Net in the official layouts: permuted depthwise Conv1d shift, Conv3d over
    (C-mean, T, H, W), full-resolution motion difference padded then pooled."""
    nt, c, h, w = x.shape
    t = m.num_segments
    n = nt // t
    v = x.view(n, t, c, h, w).permute(0, 3, 4, 2, 1).reshape(n * h * w, c, t)
    v = F.conv1d(v, m.action_shift.weight, padding=1, groups=c)
    xs = v.view(n, h, w, c, t).permute(0, 4, 3, 1, 2).reshape(nt, c, h, w)
    out = torch.zeros_like(xs)
    if "ste" in m.paths:
        p1 = xs.view(n, t, c, h, w).transpose(1, 2).mean(1, keepdim=True)
        p1 = F.conv3d(p1, m.action_p1_conv1.weight, padding=1)
        p1 = torch.sigmoid(p1.transpose(1, 2).reshape(nt, 1, h, w))
        out = out + xs * p1 + xs
    if "ce" in m.paths:
        p2 = F.conv2d(F.adaptive_avg_pool2d(xs, 1), m.action_p2_squeeze.weight)
        r = p2.shape[1]
        p2 = p2.view(n, t, r).transpose(1, 2)
        p2 = F.relu(F.conv1d(p2, m.action_p2_conv1.weight, padding=1))
        p2 = p2.transpose(1, 2).reshape(nt, r, 1, 1)
        p2 = torch.sigmoid(F.conv2d(p2, m.action_p2_expand.weight))
        out = out + xs * p2 + xs
    if "me" in m.paths:
        f = bn_eval(F.conv2d(xs, m.action_p3_squeeze.weight), m.action_p3_bn1)
        r = f.shape[1]
        fc = F.conv2d(f, m.action_p3_conv1.weight, padding=1, groups=r)
        d = fc.view(n, t, r, h, w)[:, 1:] - f.view(n, t, r, h, w)[:, :-1]
        d = F.pad(d, (0, 0, 0, 0, 0, 0, 0, 1))
        p3 = F.adaptive_avg_pool2d(d.reshape(nt, r, h, w), 1)
        p3 = torch.sigmoid(F.conv2d(p3, m.action_p3_expand.weight))
        out = out + xs * p3 + xs
    return out


def tam(m, x: Tensor) -> Tensor:
    """TAM as the official code computes it: (N, C, T, H, W) layout, grouped conv2d with the
    per-(video, channel) kernels."""
    nt, c, h, w = x.shape
    t = m.num_segments
    n = nt // t
    v = x.view(n, t, c, h, w).permute(0, 2, 1, 3, 4)  # (N, C, T, H, W)
    pooled = v.mean((3, 4))  # (N, C, T)
    if "local" in m.branches:
        L = m.L
        z = F.relu(bn_eval(F.conv1d(pooled, L[0].weight, padding=L[0].padding), L[1]))
        v = v * torch.sigmoid(F.conv1d(z, L[3].weight))[..., None, None]
    if "global" in m.branches:
        G = m.G
        z = F.relu(bn_eval(pooled.reshape(n * c, t) @ G[0].weight.t(), G[1]))
        kernel = torch.softmax(z @ G[3].weight.t(), -1)  # (N*C, K)
        k = kernel.shape[-1]
        v = F.conv2d(
            v.reshape(1, n * c, t, h * w), kernel.view(n * c, 1, k, 1), padding=(k // 2, 0), groups=n * c
        ).view(n, c, t, h, w)
    return v.permute(0, 2, 1, 3, 4).reshape(nt, c, h, w)


# --------------------------------------------------------------------------- static
def _mlp_gate(x, w1, b1, w2, b2):
    z = x.mean((2, 3))
    return torch.sigmoid(F.linear(F.relu(F.linear(z, w1, b1)), w2, b2))[..., None, None]


def se(m, x):
    return x * _mlp_gate(x, m.fc1.weight, m.fc1.bias, m.fc2.weight, m.fc2.bias)


def cse(m, x):
    return x * _mlp_gate(x, m.fc1.weight, m.fc1.bias, m.fc2.weight, m.fc2.bias)


def sse(m, x):
    s = torch.einsum("bchw,c->bhw", x, m.conv.weight.view(-1)) + m.conv.bias
    return x * torch.sigmoid(s)[:, None]


def scse(m, x):
    a, b = cse(m.cse, x), sse(m.sse, x)
    return a + b if m.combine == "sum" else torch.maximum(a, b)


def eca(m, x):
    """Banded C x C matrix: channel c sees channels c-(k-1)/2 .. c+(k-1)/2, zero padded."""
    c = x.shape[1]
    k = m.kernel_size
    wk = m.conv.weight.view(-1)
    band = torch.zeros(c, c, dtype=x.dtype)
    for i in range(c):
        for j in range(k):
            src = i + j - (k - 1) // 2
            if 0 <= src < c:
                band[i, src] = wk[j]
    return x * torch.sigmoid(x.mean((2, 3)) @ band.t())[..., None, None]


def rcan_ca(m, x):
    c1, c2 = m.conv_du[0], m.conv_du[2]
    return x * _mlp_gate(x, c1.weight.flatten(1), c1.bias, c2.weight.flatten(1), c2.bias)


def srm(m, x):
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    mean, std = flat.mean(-1), (flat.var(-1, unbiased=True) + 1e-5).sqrt()  # the authors' code: var + 1e-5
    z = mean * m.cfc[:, 0] + std * m.cfc[:, 1]
    return x * torch.sigmoid(bn_eval(z[..., None, None], m.bn))


def gct(m, x):
    if m.mode == "l2":
        emb = torch.sqrt((x**2).sum((2, 3), keepdim=True) + m.eps) * m.alpha
        norm = m.gamma / torch.sqrt((emb**2).mean(1, keepdim=True) + m.eps)
    else:
        emb = x.abs().sum((2, 3), keepdim=True) * m.alpha
        norm = m.gamma / (emb.abs().mean(1, keepdim=True) + m.eps)
    return x * (1 + torch.tanh(emb * norm + m.beta))


def fca(m, x):
    """2D DCT-II pooling, basis evaluated point by point in float64 from the paper's Eq. 6."""
    from videoattn.attention.fca import frequency_indices

    h, w = m.dct_size
    xp = F.adaptive_avg_pool2d(x, (h, w)) if x.shape[-2:] != (h, w) else x
    us, vs = frequency_indices(m.freq_sel)
    c = x.shape[1]
    per = c // len(us)
    basis = torch.zeros(c, h, w, dtype=torch.float64)
    for g, (u, v) in enumerate(zip(us, vs, strict=True)):
        u, v = u * (h // 7), v * (w // 7)
        for i in range(h):
            for j in range(w):
                bu = math.cos(math.pi * u * (i + 0.5) / h) / math.sqrt(h) * (math.sqrt(2) if u else 1)
                bv = math.cos(math.pi * v * (j + 0.5) / w) / math.sqrt(w) * (math.sqrt(2) if v else 1)
                basis[g * per : (g + 1) * per, i, j] = bu * bv
    basis = basis.float().double()  # the filters are float32 buffers, as in the official code
    z = (xp.double() * basis).sum((2, 3)).to(x.dtype)
    s = torch.sigmoid(F.linear(F.relu(F.linear(z, m.fc[0].weight)), m.fc[2].weight))
    return x * s[..., None, None]


def encnet(m, x):
    z = F.relu(bn_eval(F.conv2d(x, m.conv.weight), m.bn))
    feats = z.flatten(2).transpose(1, 2)  # (B, M, D)
    resid = feats[:, :, None, :] - m.encoding.codewords[None, None]  # (B, M, K, D)
    a = torch.softmax(m.encoding.scale * (resid**2).sum(-1), dim=-1)  # (B, M, K)
    e = (a[..., None] * resid).sum(1)  # (B, K, D)
    e = F.relu(bn_eval(e, m.code_bn)).mean(1)
    gamma = torch.sigmoid(m.fc(e))[..., None, None]
    return F.relu(x + x * gamma)


def gsop(m, x):
    z = F.conv2d(F.relu(x), m.conv_for_DR.weight, m.conv_for_DR.bias, stride=m.conv_for_DR.stride)
    z = F.relu(bn_eval(z, m.bn_for_DR))
    cov = torch.stack([torch.cov(s.flatten(1), correction=0) for s in z])  # (B, d, d)
    cov = bn_eval(cov[..., None], m.row_bn)[..., 0]  # BN over rows
    d = cov.shape[1]
    wr = m.row_conv_group.weight.view(d, 4, d)  # row i -> outputs 4i..4i+3
    r = torch.einsum("bij,ioj->bio", cov, wr).reshape(-1, 4 * d) + m.row_conv_group.bias
    s = torch.sigmoid(r @ m.fc_adapt_channels.weight.flatten(1).t() + m.fc_adapt_channels.bias)
    return x * s[..., None, None]


def _ns_sqrt(a: Tensor, n_iter: int) -> Tensor:
    """Coupled Newton-Schulz from MPN-COV's description: normalise by the trace, keep lists
    of iterates, finish with a half step, compensate."""
    b, c, _ = a.shape
    i3 = 3 * torch.eye(c, dtype=a.dtype).expand(b, c, c)
    tr = a.diagonal(dim1=1, dim2=2).sum(-1).view(b, 1, 1)
    an = a / tr
    ys, zs = [], []
    zy = 0.5 * (i3 - an)
    ys.append(an @ zy)
    zs.append(zy)
    for i in range(1, n_iter - 1):
        zy = 0.5 * (i3 - zs[i - 1] @ ys[i - 1])
        ys.append(ys[i - 1] @ zy)
        zs.append(zy @ zs[i - 1])
    yzy = 0.5 * ys[-1] @ (i3 - zs[-1] @ ys[-1])
    return yzy * tr.sqrt()


def soca(m, x):
    cov = torch.stack([torch.cov(s.flatten(1), correction=0) for s in x])
    z = _ns_sqrt(cov, m.iterations).mean(1)
    c1, c2 = m.conv_du[0], m.conv_du[2]
    s = torch.sigmoid(F.linear(F.relu(F.linear(z, c1.weight.flatten(1), c1.bias)), c2.weight.flatten(1), c2.bias))
    return x * s[..., None, None]


def bilinear(m, x):
    def cbr(seq, inp):
        return F.relu(bn_eval(F.conv2d(inp, seq[0].weight, seq[0].bias), seq[1]))

    z = cbr(m.reduce, x)  # (B, m, H, W)
    outer = torch.einsum("bihw,bjhw->bijhw", z, z)
    k = z.shape[1]
    pairs = [outer[:, i + d, i] for d in range(k) for i in range(k - d)]  # diagonal by diagonal
    b = torch.stack(pairs, 1)
    return x * torch.sigmoid(cbr(m.inner, b.mean((2, 3), keepdim=True)) * cbr(m.outer, b))


def dia(m, x):
    """One LSTM step from the zero state with explicit gate algebra (h = o * sigmoid(c))."""

    def cell(seq, v):
        return F.linear(F.relu(F.linear(v, seq[0].weight, seq[0].bias)), seq[2].weight, seq[2].bias)

    p = x.mean((2, 3))
    zero = torch.zeros_like(p)
    gates = cell(m.w_ih, p) + cell(m.w_hh, zero)
    c = p.shape[1]
    i, f, g, o = (gates[:, k * c : (k + 1) * c] for k in range(4))
    cell_state = torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(f) * zero
    return x * (torch.sigmoid(o) * torch.sigmoid(cell_state))[..., None, None]


# --------------------------------------------------------------------------- parameter counts
def nearest(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Legacy nearest upsampling written out: output pixel i takes input pixel floor(i * in / out)."""
    rows = [math.floor(i * x.shape[-2] / size[0]) for i in range(size[0])]
    cols = [math.floor(j * x.shape[-1] / size[1]) for j in range(size[1])]
    return x[..., rows, :][..., :, cols]


def tdn_long(mod, x: Tensor) -> Tensor:
    """TDN's long-term TDM and its learnable shift, frame by frame (eval mode: BN is per sample)."""
    t = mod.num_segments
    m = mod.mse
    n = x.shape[0] // t
    xs = x.view(n, t, *x.shape[1:])
    out = torch.empty_like(xs)
    for v in range(n):
        b = [m.bn1(m.conv1(xs[v, s : s + 1])) for s in range(t)]  # B_s, (1, C', H, W)
        k = [m.conv2(b[s]) for s in range(t)]  # K_s
        for s in range(t):
            d_plus = k[s + 1] - b[s] if s < t - 1 else torch.zeros_like(b[s])
            d_minus = k[s - 1] - b[s] if s > 0 else torch.zeros_like(b[s])
            attn = []
            for d in (d_plus, d_minus):
                h, w = d.shape[-2:]
                pooled = d[..., : h // 2 * 2, : w // 2 * 2]
                pooled = (
                    pooled[..., 0::2, 0::2]
                    + pooled[..., 1::2, 0::2]
                    + pooled[..., 0::2, 1::2]
                    + pooled[..., 1::2, 1::2]
                ) / 4
                s2 = nearest(m.bn3_smallscale2(m.conv3_smallscale2(pooled)), (h, w))
                s1 = m.bn3_smallscale4(m.conv3_smallscale4(d))
                attn.append(torch.sigmoid(m.bn3(m.conv3((d + s2 + s1) / 3))) - 0.5)
            out[v, s] = (xs[v, s : s + 1] * (1 + attn[0] / 2 + attn[1] / 2))[0]
    # the learnable shift: out_t = w0 x_{t-1} + w1 x_t + w2 x_{t+1}, per channel, zeros outside
    w = mod.shift.conv.weight[:, 0]  # (C, 3)
    shifted = torch.zeros_like(out)
    for s in range(t):
        for j, o in enumerate((-1, 0, 1)):
            if 0 <= s + o < t:
                shifted[:, s] += w[:, j, None, None] * out[:, s + o]
    return shifted.reshape_as(x)


def _tdn_long(c, reduction=16):
    """mse: conv1 + bn1, depthwise conv2, conv3 + bn3, two 3x3 convs + BNs; the shift's C x 3."""
    h = c // reduction
    return (c * h + 2 * h) + 9 * h + (h * c + 2 * c) + 2 * (9 * h * h + 2 * h) + 3 * c


def _action(c, ste=True, ce=True, me=True):
    r = c // 16
    return 3 * c + ste * 27 + ce * (2 * c * r + 3 * r * r) + me * (2 * c * r + 2 * r + 9 * r)


def _tam_g(t, k=3):
    return t * 2 * t + 2 * (2 * t) + 2 * t * k  # Linear(T,2T) + BN(2T) + Linear(2T,K)


def _tam_l(c, k=3):
    return c * (c // 4) * k + 2 * (c // 4) + (c // 4) * c  # Conv1d(C,C/4,K) + BN + Conv1d(C/4,C,1)


def _mlp(c, h, bias):
    return c * h + h * c + bias * (h + c)


def _bilinear(c):
    m = c // 16
    p = m * (m + 1) // 2
    return (c * m + m + 2 * m) + 2 * (p * c + c + 2 * c)


class Reference(NamedTuple):
    """A module's reference: its output recomputed from the paper's math, and its parameter
    count at C channels and T frames from the paper's layer definitions."""

    output: Callable[[nn.Module, Tensor], Tensor]
    params: Callable[[int, int], int]


REFERENCES = {  # one entry per registry name
    "tsm": Reference(tsm, lambda c, t: 0),
    "tsm_online": Reference(tsm_online, lambda c, t: 0),
    "action": Reference(action, lambda c, t: _action(c)),
    "action_ste": Reference(action, lambda c, t: _action(c, ce=False, me=False)),
    "action_ce": Reference(action, lambda c, t: _action(c, ste=False, me=False)),
    "action_me": Reference(action, lambda c, t: _action(c, ste=False, ce=False)),
    "tam": Reference(tam, lambda c, t: _tam_g(t) + _tam_l(c)),
    "tam_local": Reference(tam, lambda c, t: _tam_l(c)),
    "tam_global": Reference(tam, lambda c, t: _tam_g(t)),
    "tdn_long": Reference(tdn_long, lambda c, t: _tdn_long(c)),
    "se": Reference(se, lambda c, t: _mlp(c, c // 16, bias=False)),
    "cse": Reference(cse, lambda c, t: _mlp(c, c // 2, bias=True)),
    "sse": Reference(sse, lambda c, t: c + 1),
    "scse": Reference(scse, lambda c, t: _mlp(c, c // 2, bias=True) + c + 1),
    "eca": Reference(eca, lambda c, t: int(abs((math.log2(c) + 1) / 2)) | 1),  # odd k
    "rcan_ca": Reference(rcan_ca, lambda c, t: _mlp(c, c // 16, bias=True)),
    "srm": Reference(srm, lambda c, t: 2 * c + 2 * c),  # CFC (C x 2) + BN
    "gct": Reference(gct, lambda c, t: 3 * c),
    "fca": Reference(fca, lambda c, t: _mlp(c, c // 16, bias=False)),
    "encnet": Reference(encnet, lambda c, t: (c * c + 2 * c) + (32 * c + 32) + 2 * 32 + (c * c + c)),
    "gsop": Reference(
        gsop, lambda c, t: (c * 128 + 128) + 2 * 128 + 2 * 128 + (4 * 128 * 128 + 4 * 128) + (4 * 128 * c + c)
    ),
    "soca": Reference(soca, lambda c, t: _mlp(c, c // 16, bias=True)),
    "bilinear": Reference(bilinear, lambda c, t: _bilinear(c)),
    "dia": Reference(dia, lambda c, t: 2 * (c * (c // 4) + c // 4 + (c // 4) * 4 * c + 4 * c)),
}
