import pytest
import torch

from models.blocks import min_width_for
from models.registry import ARCH_NAMES, build_model, check_arch, default_arch_args, default_channels

NUM_CLASSES = 70


def make(arch: str, max_label_len: int = 8, img_h: int = 32, img_w: int = 128):
    return build_model(arch, NUM_CLASSES, max_label_len=max_label_len, **default_arch_args(arch, img_h, img_w)).eval()


@pytest.mark.parametrize("arch", ARCH_NAMES)
@pytest.mark.parametrize("max_label_len", [7, 8])
def test_sequence_long_enough_at_smallest_width(arch, max_label_len):
    model = make(arch, max_label_len)
    width = model.min_width
    assert width == min_width_for(max_label_len, model.width_stride)
    with torch.no_grad():
        logits = model(torch.zeros(2, default_channels(arch), 32, width))
    assert logits.shape[0] == 2 and logits.shape[2] == NUM_CLASSES
    assert logits.shape[1] >= 2 * max_label_len + 1  # CTC can emit any label, repeats included
    with pytest.raises(ValueError, match="too few frames"):
        model(torch.zeros(1, default_channels(arch), 32, width - model.width_stride))


@pytest.mark.parametrize("arch", ARCH_NAMES)
@pytest.mark.parametrize(("height", "width"), [(32, 128), (48, 160), (32, 200)])
def test_forward_contract(arch, height, width):
    model = make(arch, img_h=height, img_w=width)
    with torch.no_grad():
        logits = model(torch.randn(3, default_channels(arch), height, width))
    assert logits.shape == (3, width // 4, NUM_CLASSES)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_gradients_reach_every_parameter(arch):
    model = make(arch).train()
    logits = model(torch.randn(2, default_channels(arch), 32, 128))
    log_probs = logits.log_softmax(2).transpose(0, 1)  # (T, B, C) for CTCLoss
    targets = torch.tensor([1, 2, 3, 4, 5, 6])
    loss = torch.nn.functional.ctc_loss(log_probs, targets, torch.full((2,), 32), torch.tensor([3, 3]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_ctc_head_is_declared_and_makes_the_logits(arch):
    model = make(arch)
    head = model.ctc_head
    assert isinstance(head, torch.nn.Linear) and head is getattr(model, model.ctc_head_name)
    assert head.out_features == NUM_CLASSES
    seen = []
    hook = head.register_forward_hook(lambda module, args, out: seen.append(out))
    with torch.no_grad():
        logits = model(torch.randn(2, default_channels(arch), 32, 128))
    hook.remove()
    assert torch.equal(seen[0], logits)  # nothing after the head: resizing it resizes the output


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_no_weight_decay_is_declared_per_architecture(arch):
    model = make(arch)
    exempt = model.no_weight_decay()
    params = dict(model.named_parameters())
    assert exempt <= set(params)
    assert {n for n, p in params.items() if p.dim() == 1} <= exempt  # every bias and norm scale
    assert all(params[n].dim() == 1 for n in exempt - {"pos"})
    assert ("pos" in exempt) == (arch == "svtr_tiny")  # SVTR's learned positional embedding is not decayed
    # the rule training used before models declared it (by parameter name): the same groups, so old optimizer
    # states still load
    assert exempt == {n for n, p in params.items() if not (p.dim() > 1 and "pos" not in n)}


def test_svtr_has_local_and_global_mixing():
    from models.svtr_tiny import SVTRTiny

    model = SVTRTiny(NUM_CLASSES)
    kinds = [block.mixer.local for stage in model.stages for block in stage]
    assert kinds == [True] * 6 + [False] * 6
    assert [len(s) for s in model.stages] == [3, 6, 3]


def test_svtr_local_mask_window():
    from models.svtr_tiny import local_mask

    mask = local_mask(4, 20, (7, 11), torch.device("cpu"))
    assert mask.shape == (80, 80)
    assert mask[0, 5] == 0 and torch.isinf(mask[0, 6])  # 5 columns away inside, 6 outside


def test_unknown_arch_lists_known():
    with pytest.raises(ValueError, match="vanilla_crnn, crnn_resnet34, svtr_tiny"):
        check_arch("resnet50")
