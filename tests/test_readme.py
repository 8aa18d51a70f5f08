"""The README stays a user's page: at most 12 KiB (results first; history lives in git and in
docs/), opening with the two commands (the main job, the tests: what .ci/run runs), and every
local link and picture it names exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_the_readme_is_at_most_12_kib():
    size = len(README.read_bytes())
    assert size <= 12 * 1024, f"README.md is {size} bytes: move notes to docs/ or bench/RESULTS.md"


def test_it_opens_with_the_main_job_and_the_test_command():
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    assert "stylert export-onnx" in blocks[0] and "build-engine" in blocks[0] and "bench" in blocks[0]
    assert "pytest" in blocks[1]
    # .ci/run is the README's test command (pip made quiet): the same installs, the same pytest
    ci = (ROOT / ".ci" / "run").read_text().replace("pip install -q ", "pip install ")
    assert blocks[1].strip() in ci


def test_its_local_links_exist():
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert targets and not missing, missing
