"""Network building blocks of `brainkit.nets`."""

import pytest
import torch

from brainkit.nets.layout import CHANNELS_LAST, ChannelsLastInstanceNorm3d, channels_last_top_block
from brainkit.nets.pointwise import PointwiseConv3d
from brainkit.tasks import segment


@pytest.mark.parametrize("batch", [1, 2])
def test_pointwise_conv_matches_a_1x1x1_conv3d(batch):
    torch.manual_seed(0)
    pointwise = PointwiseConv3d(4, 7)
    conv = torch.nn.Conv3d(4, 7, kernel_size=1)
    conv.load_state_dict(pointwise.state_dict())  # the same parameters under the same names
    x = torch.randn(batch, 4, 5, 6, 3)
    out = pointwise(x)
    assert out.shape == (batch, 7, 5, 6, 3)
    assert torch.allclose(out, conv(x), atol=1e-5)


def test_pointwise_conv_handles_a_non_contiguous_input_and_trains():
    torch.manual_seed(0)
    pointwise = PointwiseConv3d(3, 2)
    conv = torch.nn.Conv3d(3, 2, kernel_size=1)
    conv.load_state_dict(pointwise.state_dict())
    x = torch.randn(1, 3, 4, 4, 4).transpose(2, 4)  # not contiguous
    assert torch.allclose(pointwise(x), conv(x), atol=1e-5)
    contiguous = x.contiguous()
    pointwise(contiguous).square().sum().backward()
    conv(contiguous).square().sum().backward()
    assert torch.allclose(pointwise.weight.grad, conv.weight.grad, atol=1e-4)
    assert torch.allclose(pointwise.bias.grad, conv.bias.grad, atol=1e-4)


def test_pointwise_conv_takes_a_channels_last_input():
    torch.manual_seed(0)
    pointwise = PointwiseConv3d(4, 7)
    conv = torch.nn.Conv3d(4, 7, kernel_size=1)
    conv.load_state_dict(pointwise.state_dict())
    x = torch.randn(1, 4, 5, 6, 3).contiguous(memory_format=torch.channels_last_3d)
    out = pointwise(x)
    assert out.is_contiguous()
    assert torch.allclose(out, conv(x.contiguous()), atol=1e-5)


def test_channels_last_instance_norm_matches_torch_and_keeps_the_layout():
    torch.manual_seed(0)
    x = (torch.randn(1, 5, 64, 64, 48) * 3 + 1).contiguous(memory_format=CHANNELS_LAST)
    out = ChannelsLastInstanceNorm3d()(x)
    assert out.is_contiguous(memory_format=CHANNELS_LAST)
    assert torch.allclose(out, torch.nn.InstanceNorm3d(5)(x.contiguous()), atol=1e-5)
    assert not torch.allclose(out, torch.nn.InstanceNorm3d(5, eps=1.0)(x.contiguous()), atol=1e-5)  # eps counts
    batch = torch.randn(2, 5, 6, 6, 6)  # two samples: torch's own normalisation
    assert torch.allclose(ChannelsLastInstanceNorm3d()(batch), torch.nn.InstanceNorm3d(5)(batch), atol=1e-6)


def test_channels_last_top_block_keeps_the_network_and_its_outputs():
    torch.manual_seed(0)
    plain = segment.build_model().eval()
    fast = segment.build_model().eval()
    fast.load_state_dict(plain.state_dict())
    channels_last_top_block(fast[0])
    assert list(fast.state_dict()) == list(plain.state_dict())  # weights load into either
    x = torch.rand(1, 1, 32, 40, 24)
    with torch.no_grad():
        expected, out = plain(x), fast(x)
        assert out.is_contiguous()
        assert torch.allclose(out, expected, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as on CPUs with native bfloat16
            # Both layouts round differently on the way (logits up to 4: 1 ulp is 0.016), so each is held to
            # float32: the fast block may cost no more accuracy than bfloat16 costs the plain network.
            fast_error = (fast(x).float() - expected).abs().max()
            assert fast_error <= 2 * (plain(x).float() - expected).abs().max() + 0.01
            block = torch.nn.InstanceNorm3d(16)
            half = torch.randn(1, 16, 8, 8, 8).to(torch.bfloat16).contiguous(memory_format=CHANNELS_LAST)
            assert ChannelsLastInstanceNorm3d()(half).dtype == block(half).dtype == torch.bfloat16
