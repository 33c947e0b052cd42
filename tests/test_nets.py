"""Network building blocks of `brainkit.nets`."""

import pytest
import torch

from brainkit.nets.pointwise import PointwiseConv3d


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
