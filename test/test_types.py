"""The seams are type-checked (issue 28): mypy checks :mod:`stvg_ros.stream.seams`, the builder (:mod:`stvg_ros.stack`),
the service and the tests' one fake, and that the grounder, the fake, the live proposal stages and the node's
settings are what the protocols the service and the builder call declare.  A fake or a grounder whose methods
drift from :class:`~stvg_ros.stream.seams.GroundingModel` fails here (the second test breaks the fake to show it).

By hand: ``MYPYPATH=test python -m mypy --follow-imports=silent --check-untyped-defs stvg_ros/stream/seams.py ...``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit,
              pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                 reason="mypy is not installed: pip install mypy (pinned in requirements/test.txt)")]

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ["stvg_ros/stream/seams.py", "stvg_ros/stack.py", "stvg_ros/stream/service.py"]

#: mypy's settings: our modules analysed as imported (their own errors not reported, only these files'), the
#: heavy third-party packages not analysed at all (their types become Any: the seams do not depend on them)
CONFIG = """\
[mypy]
follow_imports = silent
check_untyped_defs = True
disallow_incomplete_defs = True
strict_equality = True
warn_unused_ignores = True
warn_redundant_casts = True
[mypy-torch.*,transformers.*,cv2.*,scipy.*,PIL.*,tokenizers.*,safetensors.*,huggingface_hub.*,tqdm.*,yaml.*,\
rclpy.*,skimage.*,matplotlib.*,sklearn.*]
follow_imports = skip
ignore_missing_imports = True
"""

#: where the protocols are met: mypy reports every class here that lacks a member or has one of another shape
CONFORMANCE = """\
from fake_grounder import FakeGrounder

from stvg_ros.grounding.grounder import Grounder
from stvg_ros.node_params import NodeSettings
from stvg_ros.proposals.live import LiveProposalStage
from stvg_ros.proposals.motion import MotionTracks
from stvg_ros.stream.seams import GroundingModel, ProposalStage
from stvg_ros.stack import Settings, Stack, StackSettings


def grounding_models(fake: FakeGrounder, real: Grounder) -> list[GroundingModel]:
    return [fake, real]


def proposal_stages(live: LiveProposalStage, motion: MotionTracks) -> list[ProposalStage]:
    return [live, motion]


def stack_settings(node: NodeSettings, plain: StackSettings) -> list[Settings]:
    return [node, plain]


def served_by_the_fake() -> Stack:
    return Stack.build(StackSettings(), grounder=FakeGrounder(), threaded=False)
"""


def _mypy(tmp_path: Path, fake_dir: Path) -> tuple[int, str]:
    (tmp_path / "mypy.ini").write_text(CONFIG)
    (tmp_path / "seam_conformance.py").write_text(CONFORMANCE)
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini"), "--no-error-summary",
           "--show-error-codes", "--cache-dir", str(ROOT / ".pytest_cache" / "mypy"),
           *CHECKED, str(fake_dir / "fake_grounder.py"), str(tmp_path / "seam_conformance.py")]
    env = dict(os.environ, MYPYPATH=str(fake_dir))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_the_seams_type_check(tmp_path):
    rc, out = _mypy(tmp_path, ROOT / "test")
    assert rc == 0, out


def test_a_fake_that_drifts_from_the_protocol_fails(tmp_path):
    fake_dir = tmp_path / "drifted"
    fake_dir.mkdir()
    text = (ROOT / "test" / "fake_grounder.py").read_text()
    old = ("               checkpoint: Optional[Callable[[str], None]] = None,\n"
           "               frame_keys: Optional[Sequence] = None) -> GroundingResult:")
    assert text.count(old) == 1, "test/fake_grounder.py's ground changed: update this test's copy"
    # ground without frame_keys: the service's call with frame_keys=... would fail at run time
    (fake_dir / "fake_grounder.py").write_text(text.replace(old, old.split(",\n")[0] + ") -> GroundingResult:"))
    rc, out = _mypy(tmp_path, fake_dir)
    assert rc == 1, out
    assert 'incompatible type "FakeGrounder"' in out and '"GroundingModel"' in out and "ground" in out, out
