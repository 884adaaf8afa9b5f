"""Low-level differentiable operations shared by every network (pure PyTorch, CPU and CUDA)."""

from latentshop.ops.bias_act import ACTIVATIONS, bias_act
from latentshop.ops.conv import conv2d_resample, modulated_conv2d
from latentshop.ops.upfirdn2d import downsample2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "conv2d_resample",
    "downsample2d",
    "modulated_conv2d",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
