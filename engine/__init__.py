"""stylert.engine: the runtime other services embed. Imports with numpy, pillow and
onnxruntime alone (never torch)."""

from .contract import __version__
from .errors import StyleRTError
from .mixing import StyleCode
from .runtime import Engine

__all__ = ["Engine", "StyleCode", "StyleRTError", "__version__"]
