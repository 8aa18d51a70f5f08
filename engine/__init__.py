"""stylert.engine: the runtime other services embed. Imports with numpy, pillow and
onnxruntime alone (never torch)."""

from .contract import __version__
from .errors import StyleRTError

__all__ = ["StyleRTError", "__version__"]
