"""Screenshot of a real `steerlab ui` session: load the model and asset, type a prompt in headless Chromium, press
Run, wait for both replies, save a PNG. Used for docs/ui-screenshot.png:

    python scripts/ui_screenshot.py --asset runs/asa-smollm2-135m/asset --out docs/ui-screenshot.png
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None, help="default: the asset's model")
    ap.add_argument("--asset", required=True)
    ap.add_argument("--prompt", default="Translate 'the train leaves at noon' into Spanish.")
    ap.add_argument("--out", default="docs/ui-screenshot.png")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--driver", default="/usr/bin/chromedriver")
    args = ap.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from steerlab.serve.background import free_socket
    from steerlab.serve.engine import Engine
    from steerlab.ui.app import launch

    engine = Engine.load(args.model, args.asset)
    s = free_socket()
    port = s.getsockname()[1]
    s.close()
    demo, url = launch(engine, port=port, block=False)
    opts = webdriver.ChromeOptions()
    opts.binary_location = args.chromium
    for a in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1250",
        f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}",
    ):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(args.driver), options=opts)
    try:
        d.get(url)
        WebDriverWait(d, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#prompt textarea"))
        box = d.find_element(By.CSS_SELECTOR, "#prompt textarea")
        box.clear()
        box.send_keys(args.prompt)
        d.find_element(By.CSS_SELECTOR, "#run").click()
        t0 = time.time()
        WebDriverWait(d, 900).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#steered-reply textarea").get_attribute("value")
        )
        time.sleep(1.0)  # let the info panes render
        d.save_screenshot(args.out)
        print(f"saved {args.out} ({time.time() - t0:.0f} s for the two replies)")
        print(d.find_element(By.CSS_SELECTOR, "#gate").text)
    finally:
        d.quit()
        demo.close()


if __name__ == "__main__":
    main()
