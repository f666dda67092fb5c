"""bf16 4x4 stride-2 convolutions on CPU through matrix multiplies where oneDNN's kernels are slow.

On small feature maps (the 8x8 -> 4x4 end of a DCGAN discriminator, the 4x4 -> 8x8 start of its
generator) oneDNN's channels-last bf16 weight gradient is slow: conv64 at width 64, batch 64,
forward + backward under autocast, one thread, CPU time (AMD EPYC Zen 4 with AVX512-BF16, no
AMX; torch 2.14): D's 256->512 convolution's backward 95 -> 53 ms (91 -> 161 GFLOP/s), G's first
512->256 transposed convolution's backward 131 -> 54 ms (65 -> 159 GFLOP/s); on larger maps
oneDNN is as fast or faster, so they stay with it. Here those products are written as an im2col
copy (cheap: the maps are small) and one matmul each. Same arithmetic as the convolution, fp32
accumulation, so the results agree up to bf16 rounding.

The fast path is taken only for bf16 on CPU (a bf16 input, or CPU autocast to bf16), kernel 4,
stride 2, padding 1, eager mode; everything else is the ordinary convolution. Double backward
(R1's create_graph) recomputes through the ordinary convolution, so it stays exact.

A neutral engine helper (no gan-zoo imports): any architecture plugin may call ``conv2d`` and
``conv_transpose2d`` from its modules' forward (the built-in conv plugin does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Largest map (rows x columns) on which each product goes through a matmul; measured above.
FWD_MAX_SIDE = 4  # conv forward / transposed-conv input gradient: output side of the conv
WGRAD_MAX_SIDE = 8  # weight gradients
# Fewest channels (in and out) of a layer that takes the fast path: below it the matmuls are too
# small to beat oneDNN (conv32 at its default width, 128 -> 256 at 8 -> 4: 5% slower per step).
MIN_CHANNELS = 256

_CONV = dict(stride=[2, 2], padding=[1, 1], dilation=[1, 1], output_padding=[0, 0], groups=1)


def _bf16_cpu(x: Tensor) -> bool:
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu") == torch.bfloat16 and x.is_floating_point()
    return x.dtype == torch.bfloat16


def _is_4s2p1(module: torch.nn.Module) -> bool:
    return (tuple(module.kernel_size) == (4, 4) and tuple(module.stride) == (2, 2)
            and tuple(module.padding) == (1, 1) and tuple(module.dilation) == (1, 1)
            and module.groups == 1 and module.padding_mode == "zeros"
            and tuple(getattr(module, "output_padding", (0, 0))) == (0, 0))


def _wide(module: torch.nn.Module) -> bool:
    return min(module.in_channels, module.out_channels) >= MIN_CHANNELS


def _nhwc(x: Tensor) -> Tensor:
    """[N, C, H, W] -> its [N, H, W, C] view (a copy only when x is not channels-last)."""
    return x.permute(0, 2, 3, 1).contiguous()


def _im2col(x: Tensor) -> Tensor:
    """Patches of a 4x4 stride-2 padding-1 convolution: [N*Ho*Wo, 16*C], columns (kh, kw, c),
    the order of a channels-last weight's [C_out, kh, kw, C] memory."""
    n, c, h, w = x.shape
    xp = F.pad(_nhwc(x), (0, 0, 1, 1, 1, 1))
    s = xp.stride()
    patches = xp.as_strided((n, h // 2, w // 2, 4, 4, c), (s[0], 2 * s[1], 2 * s[2], s[1], s[2], 1))
    return patches.reshape(n * (h // 2) * (w // 2), 16 * c)


def _w_mat(w: Tensor) -> Tensor:
    """[A, B, 4, 4] -> [A, 16*B] with columns (kh, kw, b) (a view for a channels-last weight)."""
    return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)


def _from_mat(m: Tensor, n: int, side: int) -> Tensor:
    """[N*side*side, C] rows -> a channels-last [N, C, side, side] view."""
    return m.view(n, side, side, -1).permute(0, 3, 1, 2)


def _w_from_mat(m: Tensor, b: int) -> Tensor:
    """[A, 16*B] -> a channels-last [A, B, 4, 4] view (the weight's own layout)."""
    return m.view(m.shape[0], 4, 4, b).permute(0, 3, 1, 2)


class _Conv(torch.autograd.Function):
    """conv2d(x, w, b, stride 2, padding 1), w [C_out, C_in, 4, 4]."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        n, _, h, _ = x.shape
        side = h // 2
        fast_fwd = side <= FWD_MAX_SIDE
        fast_wgrad = side <= WGRAD_MAX_SIDE and ctx.needs_input_grad[1]
        cols = _im2col(x) if fast_fwd or fast_wgrad else None
        if fast_fwd:
            wm = _w_mat(w)
            # Written into a channels-last output through its [N*H*W, C] view: the output must
            # be no view itself (an in-place activation after it is then allowed).
            y = torch.empty((n, w.shape[0], side, side), dtype=cols.dtype,
                            memory_format=torch.channels_last)
            y_mat = y.permute(0, 2, 3, 1).view(-1, w.shape[0])
            if b is None:
                torch.mm(cols, wm.t(), out=y_mat)
            else:
                torch.addmm(b, cols, wm.t(), out=y_mat)
        else:
            y = torch.ops.aten.convolution(x, w, b, **_CONV, transposed=False)
        ctx.save_for_backward(x, w, b)
        ctx.cols = cols if fast_wgrad else None  # made here without a graph: no double backward
        return y

    @staticmethod
    def backward(ctx, go: Tensor):
        (x, w, b), cols = ctx.saved_tensors, ctx.cols
        ctx.cols = None
        if torch.is_grad_enabled():  # double backward (R1): the ordinary, differentiable path
            return _ordinary_grads(ctx, F.conv2d(x, w, b, 2, 1), (x, w, b), go)
        need_x, need_w, need_b = ctx.needs_input_grad
        gx = gw = gb = None
        if need_x or (need_w and cols is None):
            gx, gw, _ = torch.ops.aten.convolution_backward(
                go, x, w, None, **_CONV, transposed=False,
                output_mask=[need_x, need_w and cols is None, False])
        if need_w and cols is not None:
            gm = go.permute(0, 2, 3, 1).reshape(-1, w.shape[0])
            gw = _w_from_mat(gm.t() @ cols, w.shape[1])
        if need_b:
            gb = go.sum((0, 2, 3))
        return gx, gw, gb


class _ConvTranspose(torch.autograd.Function):
    """conv_transpose2d(x, w, b, stride 2, padding 1), w [C_in, C_out, 4, 4]. Its input gradient
    is a convolution of the output gradient with w and its weight gradient pairs x with that
    convolution's patches: one im2col of the output gradient serves both."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, w, b)
        return torch.ops.aten.convolution(x, w, b, **_CONV, transposed=True)

    @staticmethod
    def backward(ctx, go: Tensor):
        x, w, b = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _ordinary_grads(ctx, F.conv_transpose2d(x, w, b, 2, 1), (x, w, b), go)
        need_x, need_w, need_b = ctx.needs_input_grad
        n, c_in, side, _ = x.shape
        fast_x, fast_w = need_x and side <= FWD_MAX_SIDE, need_w and side <= WGRAD_MAX_SIDE
        gx = gw = gb = None
        if (need_x and not fast_x) or (need_w and not fast_w):
            gx, gw, _ = torch.ops.aten.convolution_backward(
                go, x, w, None, **_CONV, transposed=True,
                output_mask=[need_x and not fast_x, need_w and not fast_w, False])
        if fast_x or fast_w:
            cols = _im2col(go)  # [N*side*side, 16*C_out]
            if fast_x:
                gx = _from_mat(cols @ _w_mat(w).t(), n, side)
            if fast_w:
                xm = x.permute(0, 2, 3, 1).reshape(-1, c_in)
                gw = _w_from_mat(xm.t() @ cols, w.shape[1])
        if need_b:
            gb = go.sum((0, 2, 3))
        return gx, gw, gb


def _ordinary_grads(ctx, y: Tensor, inputs: tuple, go: Tensor) -> tuple:
    wanted = [t for t, need in zip(inputs, ctx.needs_input_grad, strict=True) if need]
    grads = iter(torch.autograd.grad(y, wanted, go, create_graph=True))
    return tuple(next(grads) if need else None for need in ctx.needs_input_grad)


def _bf16(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.to(torch.bfloat16)


def conv2d(module: torch.nn.Conv2d, x: Tensor) -> Tensor | None:
    """The module's convolution through the fast path, or None where it does not apply."""
    if not (_bf16_cpu(x) and x.dim() == 4 and _is_4s2p1(module) and _wide(module)
            and x.shape[2] == x.shape[3] and x.shape[2] % 2 == 0 and x.shape[2] // 2 <= WGRAD_MAX_SIDE):
        return None
    with torch.autocast("cpu", enabled=False):
        return _Conv.apply(_bf16(x), _bf16(module.weight), _bf16(module.bias))


def conv_transpose2d(module: torch.nn.ConvTranspose2d, x: Tensor) -> Tensor | None:
    """The module's transposed convolution through the fast path, or None."""
    if not (_bf16_cpu(x) and x.dim() == 4 and _is_4s2p1(module) and _wide(module)
            and x.shape[2] == x.shape[3] and x.shape[2] <= WGRAD_MAX_SIDE):
        return None
    with torch.autocast("cpu", enabled=False):
        return _ConvTranspose.apply(_bf16(x), _bf16(module.weight), _bf16(module.bias))


class FastConv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d (the same parameters and state_dict) whose bf16 CPU products on small
    maps go through this module's matmuls: the same result up to bf16 rounding, faster where
    oneDNN's kernels are slow. Anywhere else it is the plain convolution."""

    def forward(self, x: Tensor) -> Tensor:
        y = conv2d(self, x)
        return super().forward(x) if y is None else y


class FastConvTranspose2d(torch.nn.ConvTranspose2d):
    """torch.nn.ConvTranspose2d with this module's bf16 CPU backward on small maps."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        y = conv_transpose2d(self, x) if output_size is None else None
        return super().forward(x, output_size) if y is None else y
