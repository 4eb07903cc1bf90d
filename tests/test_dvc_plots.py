"""The plots page DVC draws (`dvc plots show`, `dvc plots diff`): every model's curves from its
CSV files, so that an experiment's lines overlay the workspace's, and every figure the stages
write; one section per system, rd first."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DVC = [sys.executable, "-m", "dvc"]


def _dvc_yaml() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def _top_level() -> tuple[dict[str, dict], set[str]]:
    """The top-level plots: the curve definitions by title, and the figures by path."""
    curves, figures = {}, set()
    for entry in _dvc_yaml()["plots"]:
        if isinstance(entry, str):
            figures.add(entry)
        else:
            ((title, spec),) = entry.items()
            curves[title] = spec
    return curves, figures


def _stage_outputs() -> set[str]:
    """Every output path the stages declare, with each model's foreach item substituted."""
    spec = _dvc_yaml()
    variables = {key: value for item in spec["vars"] for key, value in item.items()}
    paths = set()
    for stage in spec["stages"].values():
        items = stage.get("foreach")
        body = stage.get("do", stage)
        if items is None:
            expanded = [{}]
        else:
            name = items.strip("${} ")
            values = variables[name]
            expanded = list(values.values()) if isinstance(values, dict) else list(values)
        for item in expanded:
            for kind in ("outs", "metrics", "plots"):
                for out in body.get(kind, []):
                    path = out if isinstance(out, str) else next(iter(out))
                    if isinstance(item, dict):
                        for key, value in item.items():
                            path = path.replace("${item." + key + "}", str(value))
                    else:
                        path = path.replace("${item}", str(item))
                    paths.add(path)
    return paths


def test_every_model_has_its_curves_and_figures_on_the_page():
    """Each model of `vars.models` draws its validation misfit and its rollout error on every
    split from the CSV files its stages write, in a plot titled by its system; every PNG a stage
    writes is on the page; stages declare no plots of their own (the top level orders them)."""
    curves, figures = _top_level()
    variables = {key: value for item in _dvc_yaml()["vars"] for key, value in item.items()}
    for model in variables["models"].values():
        system, estimator = model["system"], model["estimator"]
        wanted = {f"plots/{system}/train/{estimator}.csv": ("epoch", "val_misfit")}
        for split in ("val", "test", "ood"):
            wanted[f"plots/{system}/evaluate/{estimator}/{split}.csv"] = ("time", "rel_error")
        for path, (x, y) in wanted.items():
            drawn = [t for t, spec in curves.items() if spec["y"].get(path) == y]
            assert len(drawn) == 1, f"{path}: {y} should be drawn once, not {drawn}"
            (title,) = drawn
            assert curves[title]["x"] == x and title.startswith(f"{system} "), title
    for spec in curves.values():
        assert spec["x_label"] and "non-dimensional" in spec["y_label"] + spec["x_label"]
    outputs = _stage_outputs()
    assert figures == {path for path in outputs if path.endswith(".png")}
    for spec in curves.values():
        assert set(spec["y"]) <= outputs  # curves only from files a stage writes
    assert not any("plots" in stage.get("do", stage) for stage in _dvc_yaml()["stages"].values())


def test_the_committed_plots_make_valid_definitions():
    """DVC reads every definition from the committed CSV files (no error, every title there)."""
    import json

    shown = subprocess.run(
        [*DVC, "plots", "show", "--json"], cwd=REPO, capture_output=True, text=True, check=True
    )
    drawn = json.loads(shown.stdout)
    assert not drawn.get("errors"), drawn.get("errors")
    curves, figures = _top_level()
    assert set(drawn["data"]) == set(curves) | figures
    for title in curves:
        (render,) = drawn["data"][title]
        assert render["type"] == "vega"


@pytest.mark.skipif(CHROMIUM is None, reason="needs a headless Chromium")
def test_the_page_groups_plots_by_system_rd_first(tmp_path):
    """Rendered in a browser with no network (the Vega charts stay empty, the figures show):
    one section per system in the order rd, ks, ..., each holding only that system's plots."""
    out = tmp_path / "page"
    subprocess.run(
        [*DVC, "plots", "show", "--out", str(out)],
        cwd=REPO,
        check=True,
        text=True,
        capture_output=True,
    )
    browser = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--virtual-time-budget=5000",
        "--dump-dom",
        (out / "index.html").as_uri(),
    ]
    dom = subprocess.run(browser, capture_output=True, text=True, timeout=180).stdout
    sections = re.findall(r"<section><h2>(\w+):[^<]*</h2>(.*?)</section>", dom, re.S)
    assert [name for name, _ in sections][:2] == ["rd", "ks"]
    total = 0
    for name, body in sections:
        ids = re.findall(r'<div id\s*=\s*"([^"]+)"', body)
        assert ids and all(re.sub(r"^plots_", "", i).startswith(name + "_") for i in ids), ids
        total += len(ids)
    curves, figures = _top_level()
    assert total == len(curves) + len(figures)  # nothing lost in the regrouping
    for src in re.findall(r'<img src="([^"]+)"', dom):
        assert (out / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src  # beside the page
