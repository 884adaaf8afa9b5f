"""Network definitions: StyleGAN2 generator and discriminator, and their shared layers."""

from latentshop.models.stylegan2 import Discriminator, Generator, MappingNetwork, SynthesisNetwork

__all__ = ["Discriminator", "Generator", "MappingNetwork", "SynthesisNetwork"]
