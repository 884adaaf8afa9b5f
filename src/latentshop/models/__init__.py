"""latentshop.models."""

__all__: list[str] = []
