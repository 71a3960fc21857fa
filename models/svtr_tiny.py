"""SVTR-Tiny: a single visual model for scene text recognition, tiny configuration."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import WidthContract


class PatchEmbedding(nn.Module):
    """Overlapping patch embedding: two 3x3 stride-2 convolutions, ``(B, C, H, W) -> (B, D, H/4, W/4)``."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_channels, dim // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(dim // 2),
            nn.GELU(),
            nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(dim),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def local_mask(height: int, width: int, window: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Additive attention mask ``(N, N)``: 0 inside a ``window`` (h, w) centred on each token, -inf outside."""
    ys = torch.arange(height, device=device).repeat_interleave(width)
    xs = torch.arange(width, device=device).repeat(height)
    inside = ((ys[:, None] - ys[None, :]).abs() <= window[0] // 2) & (
        (xs[:, None] - xs[None, :]).abs() <= window[1] // 2
    )
    return torch.zeros(inside.shape, device=device).masked_fill(~inside, float("-inf"))


class Mixing(nn.Module):
    """Multi-head self-attention over all tokens (global mixing) or within a local window (local mixing)."""

    def __init__(self, dim: int, heads: int, local: bool, window: tuple[int, int] = (7, 11)) -> None:
        super().__init__()
        self.heads, self.local, self.window = heads, local, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.scale = (dim // heads) ** -0.5

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, N, d)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B, heads, N, N)
        if self.local:
            attn = attn + local_mask(height, width, self.window, x.device)
        out = attn.softmax(dim=-1) @ v  # (B, heads, N, d)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class MixingBlock(nn.Module):
    """Pre-norm transformer block whose attention is a local or global mixer."""

    def __init__(self, dim: int, heads: int, local: bool, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = Mixing(dim, heads, local)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x), height, width)
        return x + self.mlp(self.norm2(x))


class Merging(nn.Module):
    """Between stages: 3x3 convolution with stride (2, 1) halves the height, keeps the width, widens channels."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, 3, stride=(2, 1), padding=1)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C', H/2, W)
        x = self.conv(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SVTRTiny(WidthContract):
    """SVTR of Du et al., "SVTR: Scene Text Recognition with a Single Visual Model" (IJCAI 2022, arXiv:2205.00159),
    tiny configuration: dims 64/128/256, depths 3/6/3, heads 2/4/8, six local (7x11 window) then six global
    mixing blocks, merging between stages, combining (height pooled, linear + hardswish) and a CTC head.

    Height: H/4 after the patch embedding, then halved by each merging; width stays W/4, so T = W // 4.
    The positional embedding is learned at (img_h, img_w) and interpolated for other sizes.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        img_h: int = 32,  # size the positional embedding is learned at
        img_w: int = 128,
        dims: tuple[int, int, int] = (64, 128, 256),
        depths: tuple[int, int, int] = (3, 6, 3),
        heads: tuple[int, int, int] = (2, 4, 8),
        num_local: int = 6,  # the first num_local blocks mix locally, the rest globally
        combine_dim: int = 192,
        max_label_len: int = 8,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(max_label_len)
        self.embed = PatchEmbedding(in_channels, dims[0])
        self.pos = nn.Parameter(torch.zeros(1, dims[0], img_h // 4, img_w // 4))
        nn.init.trunc_normal_(self.pos, std=0.02)
        kinds = [i < num_local for i in range(sum(depths))]
        self.stages = nn.ModuleList()
        self.merges = nn.ModuleList()
        start = 0
        for i, (dim, depth, head) in enumerate(zip(dims, depths, heads, strict=True)):
            self.stages.append(nn.ModuleList(MixingBlock(dim, head, kinds[start + j]) for j in range(depth)))
            start += depth
            if i < len(dims) - 1:
                self.merges.append(Merging(dim, dims[i + 1]))
        self.norm = nn.LayerNorm(dims[-1])
        self.combine = nn.Sequential(nn.Linear(dims[-1], combine_dim), nn.Hardswish(), nn.Dropout(dropout))
        self.head = nn.Linear(combine_dim, num_classes)
        self.apply(self._init)

    def no_weight_decay(self) -> set[str]:
        """Also the positional embedding: decaying it would pull every position towards the same vector."""
        return super().no_weight_decay() | {"pos"}

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.check_input(images)
        x = self.embed(images)  # (B, D0, H/4, W/4)
        pos = self.pos
        if pos.shape[-2:] != x.shape[-2:]:
            pos = F.interpolate(pos, size=x.shape[-2:], mode="bilinear", align_corners=False)
        x = x + pos
        for i, blocks in enumerate(self.stages):
            batch, dim, height, width = x.shape
            tokens = x.flatten(2).transpose(1, 2)  # (B, N, D)
            for block in blocks:
                tokens = block(tokens, height, width)
            x = tokens.transpose(1, 2).reshape(batch, dim, height, width)
            if i < len(self.merges):
                x = self.merges[i](x)  # (B, D', H/2, W)
        sequence = self.norm(x.mean(dim=2).transpose(1, 2))  # (B, T, D)
        return self.head(self.combine(sequence))  # (B, T, num_classes)
