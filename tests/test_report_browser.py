"""The HTML report in a real browser: Debian's chromium, headless, driven over the DevTools protocol.

Loads a report built from a hostile study (labels, column names, model and method names, reasons and example
texts that are markup and script) from a file URL and checks that the table and every chart render, that the
table sorts, that the charts follow the light/dark colour scheme, and that no script from the data ran: no
dialog opened, no console message or exception, no element but the report's own. Screenshots (light and dark)
are saved to tests/artifacts/. Skipped when chromium is absent, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from report_data import HOSTILE, hostile_diagnosis, hostile_results

from peftlab.report.write import write_report

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]


def chromium_or_skip() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    missing = "chromium is not installed (apt-get install -y chromium; .ci/run installs it)" if not path else None
    try:
        import websocket  # noqa: F401  (websocket-client, a dev dependency)
    except ImportError:
        missing = missing or "websocket-client is not installed (pip install -e '.[dev]')"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}; the browser test must run in CI")
        pytest.skip(missing)
    return path


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket: commands, and the events seen."""

    def __init__(self, url: str):
        import websocket

        self.socket = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.events: list[dict] = []
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, seconds: float = 30) -> dict:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = json.loads(self.socket.recv())
            self.events.append(message)
            if message.get("method") == event:
                return message
        raise TimeoutError(event)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")


@pytest.fixture
def browser(tmp_path):
    executable = chromium_or_skip()
    profile = tmp_path / "profile"
    process = subprocess.Popen([executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                "--remote-debugging-port=0", "--window-size=1280,900", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert process.poll() is None and time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(target for target in targets if target["type"] == "page")
        client = DevTools(page["webSocketDebuggerUrl"])
        yield client
        client.socket.close()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


PAGE_STATE = """JSON.stringify({
  rows: Array.from(document.querySelectorAll('#comparison-table tbody tr')).map(r => r.cells[0].textContent),
  charts: Array.from(document.querySelectorAll('figure.chart')).map(f => {
    const svg = f.querySelector('svg'), box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {name: f.dataset.chart, width: box.width, height: box.height,
            drawn: svg ? svg.querySelectorAll('path, use').length : 0, color: getComputedStyle(f).color};
  }),
  scripts: document.scripts.length, images: document.images.length,
  iframes: document.querySelectorAll('iframe, object, embed').length,
  sections: Array.from(document.querySelectorAll('section')).map(s => s.id),
  text: document.body.innerText,
  background: getComputedStyle(document.body).backgroundColor,
})"""


def test_report_renders_in_chromium_and_runs_no_script_from_the_data(browser, tmp_path):
    results = hostile_results()
    (tmp_path / "diagnosis.json").write_text(json.dumps(hostile_diagnosis()))
    results["diagnosis"] = "diagnosis.json"
    (tmp_path / "results.json").write_text(json.dumps(results))
    report = write_report(tmp_path)

    for domain in ("Page", "Runtime", "Log"):
        browser.call(f"{domain}.enable")
    browser.call("Page.navigate", url=report.resolve().as_uri())
    browser.wait_for("Page.loadEventFired")
    state = json.loads(browser.evaluate(PAGE_STATE))

    assert state["sections"] == ["decision", "comparison", "pareto", "curves", "overfitting", "robustness", "diagnosis",
                                 "environment"]
    assert state["rows"] == ["full (ref)", HOSTILE[2], "head", "ia3"]
    names = [chart["name"] for chart in state["charts"]]
    assert names == ["pareto_params", "pareto_memory", "pareto_time", "pareto_checkpoint", "train_loss",
                     "validation", "overfitting", "robustness_accuracy", "attacks", "spectrum"]
    for chart in state["charts"]:  # laid out at a readable size, with drawn content
        assert chart["width"] > 300 and chart["height"] > 150 and chart["drawn"] > 20, chart
    assert state["scripts"] == 1 and state["images"] == 0 and state["iframes"] == 0
    for hostile in HOSTILE:  # shown as text
        assert hostile in state["text"]

    # sorting: by accuracy, ascending then descending; the failed run stays last
    browser.evaluate("document.querySelectorAll('#comparison-table thead button')[1].click()")
    ascending = json.loads(browser.evaluate(PAGE_STATE))["rows"]
    browser.evaluate("document.querySelectorAll('#comparison-table thead button')[1].click()")
    descending = json.loads(browser.evaluate(PAGE_STATE))["rows"]
    assert ascending == ["head", HOSTILE[2], "full (ref)", "ia3"]
    assert descending == ["full (ref)", HOSTILE[2], "head", "ia3"]

    ARTIFACTS.mkdir(exist_ok=True)
    shots = {}
    for scheme in ("light", "dark"):
        browser.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": scheme}])
        shots[scheme] = json.loads(browser.evaluate(PAGE_STATE))
        height = browser.evaluate("document.documentElement.scrollHeight")
        shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                            clip={"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1})
        path = ARTIFACTS / f"report_hostile_{scheme}.png"
        path.write_bytes(__import__("base64").b64decode(shot["data"]))
        print(f"screenshot: {path}")
    # the charts take the page's text colour: dark on the light page, light on the dark one
    assert shots["light"]["charts"][0]["color"] != shots["dark"]["charts"][0]["color"]
    assert shots["light"]["background"] != shots["dark"]["background"]

    # nothing from the data ran: no dialog, no console output, no exception, no blocked script or handler
    problems = [event for event in browser.events if event.get("method") in (
        "Page.javascriptDialogOpening", "Runtime.consoleAPICalled", "Runtime.exceptionThrown")]
    problems += [event for event in browser.events if event.get("method") == "Log.entryAdded"
                 and event["params"]["entry"]["level"] in ("error", "warning")]
    assert problems == []
