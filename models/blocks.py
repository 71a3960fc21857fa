"""Pieces shared by the recognizers: the BiLSTM sequence model and the recognizer contract (:class:`WidthContract`)."""

from __future__ import annotations

import torch
from torch import nn


def min_width_for(max_label_len: int, width_stride: int) -> int:
    """Smallest input width whose sequence (T = W // stride) fits any label: T >= 2 * L + 1.

    CTC needs a blank between repeated characters, so a label of L characters may need 2L + 1 frames.
    """
    return width_stride * (2 * max_label_len + 1)


class WidthContract(nn.Module):
    """Base of every recognizer: ``(B, C, H, W) -> logits (B, T, num_classes)`` with ``T = W // width_stride``.

    What training needs to know about a model is declared here, never guessed from parameter names:
    ``ctc_head_name`` names the ``nn.Linear`` (features -> num_classes) that ``train.py --init`` resizes when the
    charset grows, and :meth:`no_weight_decay` lists the parameters AdamW must not decay.
    """

    width_stride = 4
    ctc_head_name = "head"

    def __init__(self, max_label_len: int) -> None:
        super().__init__()
        self.max_label_len = max_label_len

    @property
    def min_width(self) -> int:
        return min_width_for(self.max_label_len, self.width_stride)

    @property
    def ctc_head(self) -> nn.Linear:
        return self.get_submodule(self.ctc_head_name)

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters trained without weight decay: biases and norm scales (every 1-D parameter)."""
        return {name for name, p in self.named_parameters() if p.dim() <= 1}

    def sequence_length(self, width: int) -> int:
        return width // self.width_stride

    def check_input(self, images: torch.Tensor) -> None:
        if images.dim() != 4:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(images.shape)}")
        if images.shape[-1] < self.min_width:
            raise ValueError(
                f"input width {images.shape[-1]} < {self.min_width}: too few frames for labels of "
                f"{self.max_label_len} characters (T = W // {self.width_stride} must be >= 2L + 1)"
            )


class BidirectionalLSTM(nn.Module):
    """Two-layer BiLSTM over the width sequence: ``(B, T, in) -> (B, T, 2 * hidden)``."""

    def __init__(self, in_features: int, hidden: int, layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.rnn = nn.LSTM(
            in_features, hidden, num_layers=layers, bidirectional=True, batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return out
