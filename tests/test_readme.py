"""The README's numbers come from committed result files."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
NUMBER = re.compile(r"(?<![\w.])[+-]?\d+\.\d+")
RESULT_LINK = re.compile(r"\((benchmarks/results/[\w.-]+\.md)\)")


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def test_every_number_of_the_results_table_is_in_the_file_it_cites():
    results = _section("Results")
    table = [line for line in results.splitlines() if line.startswith("|")]
    assert len(table) >= 4, "the Results section has one table"
    cited = RESULT_LINK.findall(results[: results.index(table[0])])
    assert cited, "the paragraph above the table links the result file it comes from"
    source = (ROOT / cited[-1]).read_text()
    numbers = [n for row in table[2:] for n in NUMBER.findall(row)]
    assert len(numbers) >= 10
    missing = [n for n in numbers if n.lstrip("+") not in source]
    assert not missing, f"not in {cited[-1]}: {missing}"


def test_every_result_file_the_readme_links_is_committed():
    for path in set(RESULT_LINK.findall(README)):
        assert (ROOT / path).is_file(), path
