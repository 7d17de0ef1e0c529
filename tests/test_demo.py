"""The steps of ``make demo`` that are not feat3d commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from feat3d.demo import check_predictions, main, write_labels


def _predictions(path: Path, pairs: list[tuple[str, str]]) -> Path:
    videos = [{"video": video, "top_k": [{"label": label, "index": 0, "score": 0.9}]}
              for video, label in pairs]  # fmt: skip
    path.write_text(json.dumps({"model": {}, "videos": videos, "failures": []}))
    return path


def test_check_scores_against_the_folder_name_and_fails_below_the_bar(tmp_path, capsys):
    pairs = [("left/a.mp4", "left"), ("up/b.mp4", "down"), ("up/c.mp4", "up"),
             ("down/d.mp4", "down")]  # fmt: skip
    path = _predictions(tmp_path / "p.json", pairs)
    accuracy, lines = check_predictions(path, min_accuracy=0.6)
    assert accuracy == 0.75
    assert any("WRONG" in line and "up/b.mp4" in line for line in lines)
    assert main(["check", str(path), "--min-accuracy", "0.8"]) == 1
    assert "demo failed" in capsys.readouterr().out
    assert main(["check", str(path), "--min-accuracy", "0.7"]) == 0


def test_labels_mark_the_training_folder_train_and_the_rest_test(tmp_path):
    for name in ("motion/left/a.mp4", "motion/up/b.mp4", "heldout/left/c.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert write_labels(tmp_path, tmp_path / "labels.csv") == 3
    rows = list(csv.reader((tmp_path / "labels.csv").open()))
    assert rows == [["heldout/left/c.mp4", "left", "test"], ["motion/left/a.mp4", "left", "train"],
                    ["motion/up/b.mp4", "up", "train"]]  # fmt: skip
