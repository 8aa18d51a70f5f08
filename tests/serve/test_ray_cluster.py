"""Scale-out for real: a two-node Ray cluster on one machine (tests/serve/cluster.py, run in a
loopback-only network namespace the test makes; nodes on 127.0.0.1 and 127.0.0.2, token
authentication on, the worker node starting as a fresh machine with only the head's token),
`stylert serve --address` as docs/serving.md gives it. Skipped with the reason where such a
namespace cannot be made or Ray Serve is not installed."""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is not installed (the serve extra)")
from stylert.engine.serve import netns

pytestmark = pytest.mark.slow
WHY = netns.why_not()
SCRIPT = Path(__file__).with_name("cluster.py")


@pytest.mark.skipif(WHY is not None, reason=f"no loopback-only network namespace: {WHY}")
def test_two_nodes_serve_share_the_bank_and_survive_a_node(tiny_checkpoint):
    work = Path(tempfile.mkdtemp(prefix="stylert-cl-", dir="/tmp"))  # short: Ray's socket paths stay under 108 bytes
    try:
        r = subprocess.run(netns.command([sys.executable, str(SCRIPT), str(tiny_checkpoint), str(work),
                                          "--seconds", "6", "--clients", "4"]),
                           capture_output=True, text=True, timeout=900)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert r.returncode == 0 and line, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(line[0][7:])
    print(json.dumps(res, indent=1))  # the figures, with -s
    # refused before work, each with its remedy
    assert res["no_styles_dir"] == {"exit": 2, "says": True}
    assert res["no_token"]["exit"] == 2 and res["no_token"]["says"], res["no_token"]
    assert res["replicas_fail"]["exit"] == 2 and res["replicas_fail"]["says"], res["replicas_fail"]
    assert res["other_port"] == {"exit": 2, "says": True} and res["same_name"] == {"exit": 2, "says": True}
    # one cluster: a style added on one node is used on the other, replicas on both serve
    assert res["style_across_nodes"] == 200
    both = res["load_both"]
    assert both["status"] == {"200": both["requests"]}, both
    assert res["replica_nodes"] == [["127.0.0.1", "127.0.0.2"]], res["replica_nodes"]  # one replica on each node
    assert set(both["per_proxy"].values()) and min(both["per_proxy"].values()) > 0, both  # both proxies answered
    # the worker node dies under load: the head's proxy keeps answering, with no 5xx but 503
    killed = res["node_killed"]
    assert killed["head_proxy_recovered_s"] is not None and killed["head_proxy_5xx"] == 0, killed
    assert res["bank_after"] == [res["sid"]] and res["style_after"] == 200
    # stopping removes this application only; Serve stays for the cluster's other applications
    assert res["serve_exit"] == 0 and res["apps_after"] == ["APPS []"], res
