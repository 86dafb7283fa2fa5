"""Answer time of the `store-hf app` page for one recommendation, in headless Chromium.

    python benchmarks/app.py runs/demo                 # a finished cpu-preset run (make demo)
    python benchmarks/app.py runs/demo --repeats 5 --k 10
    python benchmarks/app.py runs/demo --screenshot docs/images/app.png   # the README's picture

Starts ``store-hf app RUN`` and, per repeat, opens the page in a fresh tab, starts from a test
user's history (a different user each repeat), presses Recommend and waits for the table: the
answer time is from the click to the table on screen. In the same run it times the backend
alone (``RecommenderApp.recommend`` on the same histories, the model loaded in this process), so
the page's own overhead is the difference. Prints both (median and range) and writes
``benchmarks/results/app.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the browser helpers of the app's test

from browser import Server, chromium, pick_test_user, shown_items  # noqa: E402

from benchmarks.machine import machine_info  # noqa: E402
from store_hf.files import atomic_write, write_json_atomic  # noqa: E402
from store_hf.space import load_app  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path, help="a finished run folder (cpu preset: runs/demo)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--screenshot", type=Path, help="save the last page (PNG), e.g. for the README")
    args = p.parse_args()

    app = load_app(args.run)
    users = app.data.test_users[: args.repeats + 1]
    backend = []
    for i, user in enumerate(users):
        t0 = time.perf_counter()
        app.recommend(user["history"], args.k)
        if i:  # the first is a warm-up
            backend.append(time.perf_counter() - t0)

    page_times = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        Server(args.run, Path(tmp) / "app.log") as server,
        chromium() as browser,
    ):
        for i, user in enumerate(users):
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server.url, wait_until="networkidle")
            if args.k != 10:  # the page's default
                page.locator("#k input[type=number]").fill(str(args.k))
                page.locator("#k input[type=number]").press("Enter")
            pick_test_user(page, user, app.data.titles)
            t0 = time.perf_counter()
            page.locator("#recommend").click()
            page.locator("#recommendations tr[data-item]").first.wait_for(timeout=600_000)
            elapsed = time.perf_counter() - t0
            shown = shown_items(page)
            expected = [r["item_id"] for r in app.recommend(user["history"], args.k)]
            if shown != expected:
                raise AssertionError(f"page showed {shown}, the model recommends {expected}")
            if i:
                page_times.append(elapsed)
            if args.screenshot and i == len(users) - 1:
                page.locator("#code-tree li").first.wait_for()
                page.screenshot(path=str(args.screenshot), full_page=True)
            page.close()

    def summary(times: list[float]) -> dict:
        return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}

    result = {
        "run": str(args.run),
        "catalogue": len(app.item_ids),
        "k": args.k,
        "repeats": len(page_times),
        "page": summary(page_times),
        "backend": summary(backend),
        "machine": machine_info(),
    }
    ratio = result["page"]["median_s"] / result["backend"]["median_s"]
    lines = [
        "# Answer time of the `store-hf app` page",
        "",
        f"`{result['machine']['command']}`: {args.run}, {len(app.item_ids):,} items, top {args.k}, "
        f"median of {len(page_times)} test users (after one warm-up), one run.",
        "",
        "| | median (s) | min | max |",
        "|---|---|---|---|",
        *(
            f"| {name} | {result[key]['median_s']:.2f} | {result[key]['min_s']:.2f} | "
            f"{result[key]['max_s']:.2f} |"
            for name, key in (
                ("page: click to table, headless Chromium", "page"),
                ("backend: RecommenderApp.recommend", "backend"),
            )
        ),
        "",
        f"Page / backend: {ratio:.2f}x. Machine: {result['machine']['cpu']}, "
        f"{result['machine']['cores']} cores, torch {result['machine']['torch']}, "
        f"load average at start {result['machine']['load_average_at_start']}.",
        "",
    ]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.output_dir / "app.json", result)
    atomic_write(args.output_dir / "app.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
