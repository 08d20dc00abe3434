"""`make lab`: JupyterLab, started with the Makefile's own options (on loopback), serves the
repository root (notebooks and the outputs beside them) and opens on the notebooks; and, in a
real browser (headless Chromium driven by Selenium), a newcomer's session in a fresh clone:
open a notebook and run a cell, save, and git sees no change; run notebook 03 from the Run menu
and read the model's MAP@3 off the page.

The browser test skips where Chromium, its driver or Selenium is missing (`.ci/run` installs
Debian's ``chromium`` and ``chromium-driver``; Selenium is a dev dependency). Selenium is given
the driver's path, so it never tries to download one.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_lab_options() -> list[str]:
    """The ``--Option=value`` arguments `make lab` gives ``jupyter lab`` (from ``make -n``)."""
    out = subprocess.run(["make", "-n", "lab"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    line = next(x for x in out.splitlines() if "jupyter lab" in x)
    return [a for a in shlex.split(line) if a.startswith("--") and "=" in a]


@contextlib.contextmanager
def _lab(root: Path, home: Path) -> Iterator[tuple[str, str]]:
    """JupyterLab as `make lab` starts it, in ``root`` (its ``.``), on a free loopback port, with
    a fresh home (no earlier settings or workspaces): yields (base URL, token) once it answers."""
    port, token = _free_port(), secrets.token_hex(16)
    options = _make_lab_options()
    assert any(o.startswith("--ServerApp.root_dir=") for o in options)
    log = open(home / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", *options, *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=root, stdout=log, stderr=subprocess.STDOUT,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "JUPYTER_RUNTIME_DIR": str(home / "rt")})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None:
                    log_tail = (home / "lab.log").read_text()[-2000:]
                    raise AssertionError(f"jupyter lab exited with {proc.returncode}: {log_tail}")
                if time.time() > deadline:
                    raise AssertionError("jupyter lab did not answer within 90 s")
                time.sleep(0.5)
        yield base, token
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_jupyterlab_lists_the_notebooks(tmp_path):
    with _lab(ROOT, tmp_path) as (base, token):
        listing = _get_json(f"{base}/api/contents/notebooks?token={token}")
        names = sorted(c["name"] for c in listing["content"] if c["type"] == "notebook")
        want = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        assert names == want and want
        top = {c["name"] for c in _get_json(f"{base}/api/contents/?token={token}")["content"]}
        assert {"notebooks", "params", "README.md"} <= top  # the root: outputs/ appears beside them once written
        with urllib.request.urlopen(f"{base}/?token={token}", timeout=10) as r:
            assert r.status == 200 and r.url.split("?")[0].endswith("/lab/tree/notebooks")  # opens on the notebooks


# --- a real browser ---------------------------------------------------------------------------

def _chrome():
    """Headless Chromium under Selenium, or a skip naming what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    names = ("chromium", "chromium-browser", "google-chrome")
    browser = next((shutil.which(n) for n in names if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("no Chromium and chromedriver (apt-get install chromium chromium-driver; .ci/run does)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


class _Page:
    """What a person does in JupyterLab, in the browser: menus, cells, the status bar."""

    def __init__(self, drv, base: str, token: str, shots: Path, log: Path | None = None):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.drv, self.base, self.token, self.shots, self.By, self.Wait = drv, base, token, shots, By, WebDriverWait
        self.log = log  # the Lab server's log, quoted when a wait fails

    def css(self, selector: str, within=None):
        return (within or self.drv).find_elements(self.By.CSS_SELECTOR, selector)

    def until(self, what: str, check, timeout: float):
        """Wait for ``check()`` to be truthy; on a time-out, fail with a screenshot's path."""
        try:
            return self.Wait(self.drv, timeout, poll_frequency=0.5).until(lambda _d: check())
        except Exception as e:  # selenium's TimeoutException, or a stale element mid-render
            shot = self.shots / f"{re.sub(r'[^a-z0-9]+', '_', what.lower())}.png"
            self.drv.save_screenshot(str(shot))
            raise AssertionError(f"JupyterLab in Chromium: {what} (screenshot {shot})\n{self.diagnosis()}") from e

    def diagnosis(self) -> str:
        """What the page and the server show when a wait fails (the screenshot stays on the CI
        machine): status bar, each code cell's prompt, dialogs, errors and stderr on the page, the
        kernels' states, the server log's tail (a kernel that died says so there)."""
        def safe(f):
            try:
                return f()
            except Exception as e:  # a diagnosis must not hide the failure it explains
                return f"<{type(e).__name__}: {e}>"
        lines = [f"status bar: {safe(self.status)!r}",
                 f"prompts: {safe(lambda: [self.prompt(c) for c in self.code_cells()])}",
                 f"dialogs: {safe(lambda: [d.text for d in self.css('.jp-Dialog')])}"]
        for mime in ("error", "stderr"):
            sel = f'.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.{mime}"]'
            lines.append(f"{mime} outputs: {safe(lambda sel=sel: [o.text[-800:] for o in self.css(sel)])}")
        lines.append(f"kernels: {safe(lambda: _get_json(f'{self.base}/api/kernels?token={self.token}'))}")
        if self.log and self.log.exists():
            lines.append("server log (tail):\n" + self.log.read_text(errors="replace")[-3000:])
        return "\n".join(lines)

    def open(self, path: str) -> None:
        """Open the notebook at ``path`` (from Lab's root) and wait for its kernel to be idle."""
        self.drv.get(f"{self.base}/lab/tree/{path}?token={self.token}")
        self.until(f"{path} shows its cells", lambda: self.css(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell"), 120)
        self.until(f"{path}'s kernel starts", lambda: "Idle" in self.status(), 120)

    def status(self) -> str:
        return " ".join(e.text for e in self.css("#jp-main-statusbar"))

    def code_cells(self):
        return self.css(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")

    def menu(self, menu: str, command: str) -> None:
        """Click menu ``menu`` of the menu bar, then its item running ``command``."""
        [item] = [e for e in self.css(".lm-MenuBar-itemLabel") if e.text == menu]
        item.click()
        entry = self.until(f"menu {menu} shows {command}",
                           lambda: self.css(f'.lm-Menu-item[data-command="{command}"]'), 10)[0]
        entry.click()

    def prompt(self, cell) -> str:
        return self.css(".jp-InputPrompt", cell)[0].text.strip()

    def dirty(self) -> bool:
        return bool(self.css(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty"))


@pytest.fixture(scope="module")
def browser():
    drv = _chrome()
    yield drv
    drv.quit()


def test_a_newcomer_runs_a_notebook_in_jupyterlab_in_a_browser(browser, smoke_run, tmp_path):
    """A fresh clone after `make setup` (git filter installed) and `make demo`: JupyterLab in
    Chromium. Opening notebook 01 and running its first cell, then saving, leaves nothing to commit
    (the filter strips outputs, counts and the kernel's language_info Lab writes); File ▸ Close and
    Shut Down closes it. Notebook 03, run with
    Run ▸ Run All Cells, trains a real model and shows its MAP@3 — the number it recorded — with
    its figures drawn and no error or warning printed in any cell."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    demo, _ = smoke_run
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    made = subprocess.run(["make", "--no-print-directory", "git-filter", f"BIN={Path(sys.executable).parent}"],
                          cwd=clone, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    # notebook 03 as papermill would run it after `make demo`: the demo's data, a scratch out_dir;
    # under outputs/ (git-ignored), where the runner's executed reports go
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    report = clone / "outputs" / "lab" / "03_train.ipynb"
    report.parent.mkdir(parents=True)
    out_dir = report.parent / "out"
    nb = parameterize_notebook(load_notebook_node(str(clone / "notebooks" / "03_train.ipynb")),
                               {"data_dir": str(demo.parent / "data"), "store_dir": str(demo.parent / "store"),
                                "out_dir": str(out_dir)})
    nbformat.write(nb, report)
    home = tmp_path / "home"
    home.mkdir()

    with _lab(clone, home) as (base, token):
        page = _Page(browser, base, token, tmp_path, home / "lab.log")
        page.open("notebooks/01_eda.ipynb")
        first = page.code_cells()[0]
        page.css(".jp-InputArea-editor", first)[0].click()
        ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        page.until("01's first cell runs", lambda: re.fullmatch(r"\[\d+\]:", page.prompt(page.code_cells()[0])), 180)
        page.menu("File", "docmanager:save")
        page.until("01 is saved", lambda: not page.dirty(), 30)
        saved = json.loads((clone / "notebooks" / "01_eda.ipynb").read_text())
        assert saved["metadata"].get("language_info", {}).get("version")  # Lab wrote the kernel's details...
        assert any(c.get("execution_count") for c in saved["cells"])      # ...and the count of the cell it ran
        git = lambda *a: subprocess.run(["git", *a], cwd=clone, capture_output=True, text=True)  # noqa: E731
        diff = git("diff", "--exit-code")
        assert diff.returncode == 0 and diff.stdout == "", diff.stdout  # ...and git sees no change
        git("add", "-A")
        assert git("status", "--porcelain").stdout == ""  # nothing to commit
        # done with 01: File ▸ Close and Shut Down Notebook, confirmed (its kernel's memory freed)
        page.menu("File", "filemenu:close-and-cleanup")
        page.until("the shut-down dialog", lambda: page.css(".jp-Dialog .jp-mod-accept"), 30)[0].click()
        page.until("01's kernel shuts down", lambda: _get_json(f"{base}/api/kernels?token={token}") == [], 60)

        page.open("outputs/lab/03_train.ipynb")
        t0 = time.time()
        page.menu("Run", "runmenu:run-all")
        page.until("03 runs to its Results cell",
                   lambda: re.fullmatch(r"\[\d+\]:", page.prompt(page.code_cells()[-1]))
                   and "Idle" in page.status(), 900)
        ran_s = time.time() - t0
        errors = [e.text for e in page.css('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]')]
        assert not errors, errors
        warned = [e.text for e in page.css('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
                  if "Warning" in e.text]
        assert not warned, warned
        images = [i.get_property("naturalWidth") for i in page.css(".jp-RenderedImage img")]
        assert len(images) >= 2 and all(w > 100 for w in images), images  # the curves and the classes, drawn
        shown = page.css(".jp-OutputArea-output", page.code_cells()[-1])[-1].text
        browser.save_screenshot(str(tmp_path / "03_results.png"))

    recorded = json.loads((out_dir / "metrics" / "03_train.json").read_text())
    on_page = float(re.search(r"'valid_map3': ([0-9.]+)", shown).group(1))
    assert on_page == round(recorded["valid_map3"], 4), (shown, recorded["valid_map3"])
    assert on_page > 0.5, f"MAP@3 {on_page} on the demo's 12 classes (chance ~0.15) after {ran_s:.0f} s"


def test_the_doodle_pad_guesses_a_stroke_drawn_in_the_browser(browser, smoke_run, tmp_path):
    """Notebook 07 in JupyterLab after `make demo`: Run All shows the pad with the recorded
    drawing on its canvas and the model's guesses for it; a stroke drawn with the mouse
    (pointer events from Chromium) goes to the kernel and new guesses come back to the page."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    from selenium.webdriver.common.action_chains import ActionChains

    demo, _ = smoke_run
    label = next((demo / "train").glob("resnet18_*")).name
    words = json.loads((demo / "train" / label / "preds" / "manifest.json").read_text())["words"]
    report = tmp_path / "root" / "07_play.ipynb"
    report.parent.mkdir()
    nb = parameterize_notebook(load_notebook_node(str(ROOT / "notebooks" / "07_play.ipynb")),
                               {"out_dir": str(demo), "run_label": label})
    nbformat.write(nb, report)
    (tmp_path / "home").mkdir()
    with _lab(report.parent, tmp_path / "home") as (base, token):
        page = _Page(browser, base, token, tmp_path, tmp_path / "home" / "lab.log")
        page.open("07_play.ipynb")
        page.menu("Run", "runmenu:run-all")
        guesses = lambda: (page.css(".doodle-pad-guesses") or [None])[0]  # noqa: E731
        first = page.until("the pad shows the recorded drawing's guesses",
                           lambda: guesses() is not None and guesses().text.startswith("I see") and guesses().text, 300)
        canvas = page.css("canvas.doodle-pad-canvas")[0]
        inked = browser.execute_script(
            "const c = arguments[0], d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n;", canvas)
        assert inked > 50, inked  # the recorded drawing is on the canvas
        ActionChains(browser).move_to_element_with_offset(canvas, -90, 80).click_and_hold() \
            .move_by_offset(40, -60).move_by_offset(40, 60).move_by_offset(40, -60).move_by_offset(40, 60) \
            .release().perform()
        second = page.until("new guesses after a drawn stroke", lambda: guesses().text != first and guesses().text, 60)
        browser.save_screenshot(str(tmp_path / "07_pad.png"))
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
        canvas.find_element(page.By.XPATH, "..").screenshot(str(tmp_path / "07_pad_widget.png"))  # docs/pad.png
    shown = re.findall(r"([a-z ]+) \((\d+)%\)", second.removeprefix("I see ").replace(", ", ","))
    assert len(shown) == 3 and all(w.strip(",") in words for w, _ in shown), second
    assert sum(int(p) for _, p in shown) <= 101
