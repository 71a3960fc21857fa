"""ResNet34-CRNN: torchvision's ResNet-34 basic blocks as the trunk, a BiLSTM and a linear CTC head."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from .blocks import BidirectionalLSTM, WidthContract


def make_stage(in_channels: int, out_channels: int, blocks: int, stride: tuple[int, int]) -> nn.Sequential:
    downsample = None
    if stride != (1, 1) or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
        )
    layers = [BasicBlock(in_channels, out_channels, stride=stride, downsample=downsample)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class CRNNResNet34(WidthContract):
    """ResNet-34 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016) as the CRNN trunk.

    Stages [3, 4, 6, 3]. Strides are adapted for text: the stem pools 2x2 and stage 2 strides 2x2, stages 3
    and 4 stride (2, 1) (height only), so width is downsampled 4x and T = W // 4. The reference tutorial's 16x
    width downsampling gave T = 10 at width 160, too short for 7-character labels.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        channels: tuple[int, int, int, int] = (64, 128, 256, 512),
        blocks: tuple[int, int, int, int] = (3, 4, 6, 3),  # ResNet-34
        hidden: int = 256,  # LSTM units per direction
        max_label_len: int = 8,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(max_label_len)
        c = list(channels)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(c[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),  # H/2, W/2
        )
        self.body = nn.Sequential(
            make_stage(c[0], c[0], blocks[0], (1, 1)),
            make_stage(c[0], c[1], blocks[1], (2, 2)),  # H/4, W/4
            make_stage(c[1], c[2], blocks[2], (2, 1)),  # H/8, W/4
            make_stage(c[2], c[3], blocks[3], (2, 1)),  # H/16, W/4
        )
        self.rnn = BidirectionalLSTM(c[3], hidden, dropout=dropout)
        self.head = nn.Linear(2 * hidden, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.check_input(images)
        features = self.body(self.stem(images))  # (B, C', H/16, W/4)
        sequence = features.mean(dim=2).transpose(1, 2)  # (B, T, C')
        return self.head(self.rnn(sequence))  # (B, T, num_classes)
