"""A wheel (non-editable install) must carry what the defaults use: the shipped model and the
calibration images, at the paths the code looks for them (beside stylert/engine)."""

import fnmatch
import tomllib
from pathlib import Path

from stylert.engine.artifacts import PACKAGE_ROOT, SHIPPED_CALIB_DIR, SHIPPED_MODEL_DIR

REPO = Path(__file__).resolve().parent.parent


def _wheel_files() -> set[str]:
    """Paths (relative to site-packages/stylert) that pyproject's package-data puts in a wheel."""
    st = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    out = set()
    for pkg, globs in st["package-data"].items():
        src = REPO / st["package-dir"][pkg]
        dest = pkg.split(".", 1)[1].replace(".", "/")
        for f in src.rglob("*"):
            rel = f.relative_to(src).as_posix()
            if f.is_file() and any(fnmatch.fnmatch(rel, g) for g in globs):
                out.add(f"{dest}/{rel}")
    return out


def test_wheel_carries_the_shipped_model_and_calibration_images():
    shipped = [f for d in (SHIPPED_MODEL_DIR, SHIPPED_CALIB_DIR) for f in d.iterdir()
               if f.suffix in {".safetensors", ".json", ".jpg"}]
    assert len(shipped) > 10
    missing = {f.relative_to(PACKAGE_ROOT).as_posix() for f in shipped} - _wheel_files()
    assert not missing, f"not in the wheel's package-data: {sorted(missing)}"
