"""circuitcut: find, remove and compare the parts of a language model that carry a capability."""

from circuitcut.models import load_model

__all__ = ["load_model"]
