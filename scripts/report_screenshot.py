"""A screenshot of a run's report.html, as the README shows: `python scripts/report_screenshot.py <run_dir> <out.png>
[--tab N] [--filter NAME] [--steps-back K]`.

Opens the page from disk in headless Chromium (the system's /usr/bin/chromium, driven by playwright), picks the
tab and filter, steps back K supervision steps from the answer step, and saves the viewport as a small PNG.
"""
import argparse
import io
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("out")
    parser.add_argument("--tab", type=int, default=None, help="tab index (default: the page's first evaluation)")
    parser.add_argument("--filter", default="all")
    parser.add_argument("--steps-back", type=int, default=0)
    parser.add_argument("--item", type=int, default=0, help="position in the filtered list")
    parser.add_argument("--height", type=int, default=1100)
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": args.height})
        page.goto((Path(args.run_dir).resolve() / "report.html").as_uri())
        page.wait_for_selector(".detail h2")
        if args.tab is not None:
            page.click(f"#tab-{args.tab}")
            page.wait_for_selector(".detail h2")
        page.select_option("#filter", args.filter)
        for _ in range(args.item):
            page.keyboard.press("ArrowDown")
        for _ in range(args.steps_back):
            page.keyboard.press("ArrowLeft")
        page.wait_for_function("performance.getEntriesByName('trm-charts').length > 0")
        page.wait_for_timeout(500)
        shot = page.screenshot()
        browser.close()
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
    image.quantize(colors=128).save(args.out, optimize=True)


if __name__ == "__main__":
    main()
