"""Model adapters, one per modality."""

from .base import Encoded, ModelAdapter  # noqa: F401
from .image import ImageAdapter  # noqa: F401
from .tabular import TabularAdapter  # noqa: F401
from .text import TextAdapter  # noqa: F401
