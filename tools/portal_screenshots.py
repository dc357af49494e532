"""Screenshots of the hub portal for docs/ (``make screenshots``).

Builds the demo's three institutions (smaller), starts them with a broker and a hub as
``make demo`` does, then drives the portal in Debian's chromium as a registered
researcher: a variant look-up, a cohort with a breakdown by sex and age, saved cohorts.
Writes docs/portal-overview.png, docs/portal-cohort.png and docs/portal-phone.png.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright
from rich.console import Console

from genofed import demo
from genofed import devbroker as broker
from genofed.governance import keys

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _look_up(page: Page, planted: str) -> None:
    chrom, pos, ref, alt = planted.split("-")
    page.fill("#v-chrom", chrom)
    page.fill("#v-pos", pos)
    page.fill("#v-ref", ref)
    page.fill("#v-alt", alt)
    page.click("#variant-form button")
    page.wait_for_selector("#variant-chart rect")


def _build_cohort(page: Page) -> None:
    page.fill("#term-input", "seizure")
    page.wait_for_selector("#term-suggestions li[data-term='HP:0001250']")
    page.click("#term-suggestions li[data-term='HP:0001250']")
    page.fill("#min-age", "18")
    page.wait_for_timeout(600)  # the count waits for typing to stop
    page.wait_for_function(
        "document.querySelector('#cohort-counts').getAttribute('aria-busy') === 'false'"
    )
    page.wait_for_selector("#cohort-chart rect")
    page.click("#breakdown-button")
    page.wait_for_selector("#age-chart rect")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOCS, help="where the PNGs go")
    parser.add_argument("--samples", type=int, default=300, help="samples of the largest site")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs Debian's chromium: apt-get install chromium")
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(temporary)
        keys.create_key(workdir / "broker.json", demo.DEMO_BROKER)
        nodes, planted = {}, ""
        for site in demo.INSTITUTIONS:
            nodes[site.name], site_planted = demo.build_institution(
                workdir, site, samples=args.samples, console=console
            )
            planted = planted or site_planted
        processes = demo.Processes(workdir / "logs")
        try:
            _, hub, _ = demo.start_federation(workdir, nodes, processes, port=18700)
            key = keys.load_key(workdir / "broker.json")
            token = broker.access_token(
                key, "demo-researcher", broker.bona_fide_visas(key, "demo-researcher")
            )
            for name, criteria in (
                ("Adults with seizures", {"terms": ["HP:0001250"], "min_age": 18}),
                ("Women over 60", {"sex": "female", "min_age": 60}),
            ):
                httpx.post(
                    f"{hub}/hub/cohorts",
                    json={"name": name, "criteria": criteria},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=60,
                ).raise_for_status()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, headless=True, args=["--no-sandbox"]
                )
                for name, viewport in (
                    ("portal-overview.png", {"width": 1280, "height": 900}),
                    ("portal-phone.png", {"width": 375, "height": 800}),
                ):
                    page = browser.new_page(viewport=viewport)
                    page.goto(hub)
                    page.fill("#token", token)
                    page.dispatch_event("#token", "change")
                    page.wait_for_selector("#datasets tbody tr")
                    page.wait_for_function(
                        "document.querySelectorAll('#nodes .health-up').length === 3"
                    )
                    if name == "portal-phone.png":  # the top of the page, as it opens
                        page.screenshot(path=args.out / name)
                    else:
                        _look_up(page, planted)
                        page.evaluate("window.scrollTo(0, 0)")
                        page.screenshot(path=args.out / name)
                        _build_cohort(page)
                        page.locator("#cohort-section").screenshot(
                            path=args.out / "portal-cohort.png"
                        )
                    page.close()
                browser.close()
        finally:
            processes.stop()
    console.print(f"screenshots written to {args.out}")


if __name__ == "__main__":
    main()
