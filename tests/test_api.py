"""The top-level API: ``feat3d.extract`` and friends are the functions, however often and
in whatever order the package's modules are imported."""

from __future__ import annotations

import subprocess
import sys


def test_api_names_stay_functions_after_the_modules_are_imported():
    code = (
        "import feat3d, feat3d.cli, feat3d.run.distribute, feat3d.run.two_stream\n"
        "for name in ('extract', 'classify', 'load_model', 'get_backbone'):\n"
        "    for _ in range(2):\n"
        "        assert callable(getattr(feat3d, name)) and not isinstance(\n"
        "            getattr(feat3d, name), type(feat3d)), name\n"
        "from feat3d import extract, classify\n"
        "assert extract.__module__ == 'feat3d.run.extract'\n"
        "assert classify.__module__ == 'feat3d.run.classify'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
