"""Vanilla CRNN: a VGG-style CNN, a BiLSTM and a linear CTC head."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import BidirectionalLSTM, WidthContract


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class VanillaCRNN(WidthContract):
    """CRNN of Shi, Bai and Yao, "An End-to-End Trainable Neural Network for Image-based Sequence Recognition
    and Its Application to Scene Text Recognition" (TPAMI 2017, arXiv:1507.05717).

    Seven 3x3 convolutions with max-pools 2x2, 2x2, (2,1), (2,1): width is downsampled 4x, so T = W // 4.
    Differences from the paper: BatchNorm after every convolution, and the last 2x2 valid convolution is a padded
    3x3 one (keeps T = W // 4); the remaining height is averaged away, so any height >= 16 works.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        channels: tuple[int, ...] = (64, 128, 256, 256, 512, 512, 512),  # the paper's widths
        hidden: int = 256,  # LSTM units per direction
        max_label_len: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(max_label_len)
        c = list(channels)
        if len(c) != 7:
            raise ValueError("vanilla_crnn needs 7 channel widths")
        self.cnn = nn.Sequential(
            conv_bn_relu(in_channels, c[0]), nn.MaxPool2d(2, 2),  # H/2, W/2
            conv_bn_relu(c[0], c[1]), nn.MaxPool2d(2, 2),  # H/4, W/4
            conv_bn_relu(c[1], c[2]),
            conv_bn_relu(c[2], c[3]), nn.MaxPool2d((2, 1), (2, 1)),  # H/8, W/4
            conv_bn_relu(c[3], c[4]),
            conv_bn_relu(c[4], c[5]), nn.MaxPool2d((2, 1), (2, 1)),  # H/16, W/4
            conv_bn_relu(c[5], c[6]),
        )  # fmt: skip
        self.rnn = BidirectionalLSTM(c[6], hidden, dropout=dropout)
        self.head = nn.Linear(2 * hidden, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.check_input(images)
        features = self.cnn(images)  # (B, C', H/16, W/4)
        sequence = features.mean(dim=2).transpose(1, 2)  # (B, T, C')
        return self.head(self.rnn(sequence))  # (B, T, num_classes)
