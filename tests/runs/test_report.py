"""The HTML audit report: content and escaping in Python, behaviour in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from ov_explain.explain import Explainer
from ov_explain.runs.audit.run import AuditOptions, run_audit
from ov_explain.runs.dataset import LabelResolver, read_dataset
from ov_explain.runs.report import ReportError, build_report

HOSTILE = '<script>alert("x")</script> & co'
EXPECTED = {"True_positive_high_confidence": 2, "True_positive_low_confidence": 2,
            "True_positive_two_predictions": 1, "False_positive_low_confidence": 2}


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory, classifier, photos_dir) -> Path:
    """An audit of the bundled photos where the class 'tiger cat' (chelsea's prediction) is named HOSTILE."""
    from ov_explain import Classifier

    names = list(classifier.labels)
    names[282] = HOSTILE
    renamed = Classifier(classifier.files.model, device="CPU", labels=names, cache_dir=None)
    out = tmp_path_factory.mktemp("report") / "audit"
    run_audit(read_dataset(photos_dir / "ground_truth.csv"), Explainer(renamed, mode="whitebox"), out,
              resolver=LabelResolver(names, 1000), options=AuditOptions(grids=False))
    return out


@pytest.mark.slow
def test_report_is_self_contained_and_escapes_labels(audit_dir):
    html = (audit_dir / "report.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co" in html
    assert html.count("<script>") == 1  # only the page's own
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from the network
    assert len(re.findall(r'class="item"', html)) == 7
    assert html.count('src="data:image/jpeg;base64,') == 7 + 10  # originals + overlays


@pytest.mark.slow
def test_report_rebuilds_and_survives_a_moved_dataset(audit_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(audit_dir, copy)
    rows = (copy / "manifest.jsonl").read_text().replace(str(Path(audit_dir).parent), "/nowhere")
    (copy / "manifest.jsonl").write_text(rows.replace('"source": "', '"source": "/nowhere/'))
    html = build_report(copy).read_text()
    assert html.count("original not found") == 7 and len(re.findall(r'class="item"', html)) == 7
    with pytest.raises(ReportError, match="not a finished audit"):
        build_report(tmp_path)


@pytest.mark.slow
def test_the_page_is_the_same_whether_its_compiled_template_is_cached_or_cannot_be(audit_dir, tmp_path,
                                                                                   monkeypatch):
    import tempfile

    from ov_explain.runs import report

    pages = []
    for temp in (tmp_path / "temp", tmp_path / "a_file"):  # a temp folder; one that cannot be made
        temp.mkdir() if temp.name == "temp" else temp.write_text("not a folder")
        monkeypatch.setattr(tempfile, "tempdir", str(temp))
        for _ in range(2):  # compiled (and cached where it can be), then from the cache
            report._environment.cache_clear()
            pages.append(build_report(audit_dir).read_text())
    report._environment.cache_clear()
    assert len(set(pages)) == 1 and pages[0].count('class="item"') == 7
    assert [p.name for p in (tmp_path / "temp").iterdir()][0].startswith("_jinja2-cache")


@pytest.mark.slow
def test_a_large_audit_s_report_shows_every_count_and_the_most_telling_images(audit_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(audit_dir, copy)
    html = build_report(copy, per_case=1).read_text()
    for case, count in EXPECTED.items():
        assert f'data-case-count="{case}">{count}<' in html  # the counts are of every image
    assert len(re.findall(r'class="item"', html)) == len(EXPECTED)  # one image per case shown
    assert "1</span> shown of 2: the most telling" in html
    low = html[html.index('id="True_positive_low_confidence"'):]
    shown = re.search(r'data-conf="([0-9.]+)"', low)[1]
    confidences = [json.loads(line)["top1_probability"] for line in (copy / "manifest.jsonl").read_text().splitlines()
                   if json.loads(line)["case"] == "True_positive_low_confidence"]
    assert float(shown) == min(confidences)  # a low-confidence case shows its least confident image first


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("OV_EXPLAIN_REQUIRE_BROWSER"):
            pytest.fail("chromium not found, but OV_EXPLAIN_REQUIRE_BROWSER is set (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    return path


@pytest.mark.slow
def test_report_in_a_real_headless_chromium(audit_dir, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
                else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
        page.on("request", lambda r: problems.append(f"network: {r.url}") if not r.url.startswith(("file:", "data:"))
                else None)
        page.goto((audit_dir / "report.html").as_uri())

        for case, count in EXPECTED.items():
            assert page.locator(f"section#{case} .item:visible").count() == count
            assert page.locator(f"section#{case} .visible-count").inner_text() == str(count)
        assert page.locator(".item:visible").count() == 7
        assert HOSTILE in page.locator("section#False_positive_low_confidence .pred").first.inner_text()

        page.select_option("#filter-case", "True_positive_low_confidence")
        assert page.locator(".item:visible").count() == 2
        assert page.locator("section#True_positive_high_confidence").is_hidden()
        page.select_option("#filter-case", "")
        page.select_option("#filter-class", "espresso")
        assert page.locator(".item:visible .name").all_inner_texts() == ["coffee"]
        page.select_option("#filter-class", HOSTILE)
        assert page.locator(".item:visible .name").all_inner_texts() == ["chelsea"]
        page.select_option("#filter-class", "")
        assert page.locator("#shown-count").inner_text() == "7 shown"

        low = "section#True_positive_low_confidence .item .name"
        assert page.locator(low).all_inner_texts() == ["motorcycle", "rocket"]  # 0.49, 0.26
        page.select_option("#sort", "asc")
        assert page.locator(low).all_inner_texts() == ["rocket", "motorcycle"]

        shot = tmp_path / "report.png"
        page.select_option("#sort", "desc")
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert problems == []
    picture = cv2.imread(str(shot))
    assert picture is not None and picture.shape[0] > 1400
    assert float(picture.std()) > 30  # photos and overlays, not a blank page
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 1000
