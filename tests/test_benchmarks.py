"""benchmarks/speed.py --quick: runs every section on tiny backbones and writes its report."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("trie_step", "beam_search", "recommend", "tokenizer_paths", "scoring", "encode")


def _ratio(cell: str) -> float:
    assert cell.endswith("x"), cell
    return float(cell[:-1])


def test_speed_quick_writes_every_ratio(tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "benchmarks/speed.py", "--quick", "--threads", "1"]
    proc = subprocess.run(
        [*cmd, "--output-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "speed.md").read_text()
    assert "speed.py --quick" in md and "torch threads 1" in md  # the command and the machine
    lines = md.splitlines()
    head = lines.index("| section | comparison | A | B | ratio | ratio is |")
    assert lines[head + 1] == "|---|---|---|---|---|---|"
    rows = []
    for line in lines[head + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 6, line
        rows.append(cells)
    assert {r[0] for r in rows} == set(SECTIONS)
    for section, _, _, _, ratio, meaning in rows:
        value = _ratio(ratio)
        assert math.isfinite(value) and value > 0, (section, ratio)
        assert meaning, section
    report = json.loads((out / "speed.json").read_text())
    assert set(report["sections"]) == set(SECTIONS)
    assert report["machine"]["torch_threads"] == 1 and report["machine"]["cores"] >= 1
    assert report["sections"]["recommend"]["same_beams"] is True
