"""A wheel (non-editable install) must carry what the defaults use: the shipped model, the
calibration images and the service's page, at the paths the code looks for them (beside
stylert/engine)."""

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


def test_wheel_carries_the_page():
    """The page `stylert serve` answers at / (engine/serve/page/), every file of it."""
    page = [f.relative_to(PACKAGE_ROOT).as_posix() for f in (PACKAGE_ROOT / "engine" / "serve" / "page").iterdir()]
    assert len(page) >= 3
    missing = set(page) - _wheel_files()
    assert not missing, f"not in the wheel's package-data: {sorted(missing)}"


def test_the_runtime_imports_and_runs_the_shipped_model_with_torch_absent(tmp_path):
    """Every module of stylert.engine imports, and the shipped model stylizes, in a process
    where `import torch` fails (as after `pip install stylert` without extras)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent('''
        import importlib, pkgutil, sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is absent here")
        sys.meta_path.insert(0, NoTorch())
        import stylert.engine as E
        skip = {"stylert.engine.serve.ray_app"}  # needs ray, an extra
        names = [m.name for m in pkgutil.walk_packages(E.__path__, "stylert.engine.")]
        for n in names:
            if n not in skip:
                try:
                    importlib.import_module(n)
                except ImportError as e:
                    if "torch" in str(e):
                        raise
        import numpy as np
        from stylert.engine import Engine
        with Engine.load() as eng:
            img = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
            out = eng.stylize(img, eng.encode_style(img[::-1]))
            assert out.shape == img.shape
        assert "torch" not in sys.modules
        print("ok", len(names))
    ''')
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr[-3000:]
