"""latentshop.checkpoints."""

__all__: list[str] = []
