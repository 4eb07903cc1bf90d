"""`ml4d experiments`: the DVC experiments side by side in a table a person can read."""

from __future__ import annotations

import pytest

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.reporting.experiments import rows, shown, table


def state(rev, name, lam_rd, rd_tr_val, ks_val=0.03):
    headline = {"val_t30": 0.2, "test_t10": 0.25, "test_t30": 0.3, "stable": 1.0}
    return {
        "rev": rev,
        "name": name,
        "data": {
            "params": {
                "params.yaml": {"data": {"reg": {"rd": {"lam": lam_rd}, "ks": {"lam": 10.0}}}}
            },
            "metrics": {
                "metrics/rd/headline/ols.json": {"data": headline},
                "metrics/rd/headline/tr-projector.json": {
                    "data": {**headline, "val_t30": rd_tr_val}
                },
                # a chaotic system's headline: scored at the report time
                "metrics/ks/headline/ols.json": {
                    "data": {
                        "val_t10": ks_val,
                        "test_t10": 0.04,
                        "stable": 1.0,
                    }
                },
            },
        },
    }


RECORD = [
    state("workspace", None, 100.0, 0.154),
    {
        **state("0123456789abcdef", "main", 100.0, 0.154),
        "experiments": [
            {"name": "lam-2.5", "revs": [state("fedcba9876543210", "lam-2.5", 2.5, 0.31)]},
            {"name": None, "revs": [state("aaaaaaa1234567", None, 0.3, 0.42)]},
        ],
    },
]


def gates(rev, system):
    """The gate outcomes each state's commit holds (rd only)."""
    return {"ols": "champion", "tr-projector": "refused"} if system == "rd" else {}


def test_each_experiment_is_a_row_with_its_lam_and_the_numbers_it_is_judged_by():
    groups, labels, body = rows(RECORD, gates)
    assert [g for g, _ in groups] == ["", "rd ols", "rd tr-projector", "ks ols"]
    assert labels[:2] == ["experiment", "λ rd"]  # ks's λ is the same everywhere: no column
    assert [r[0] for r in body] == ["workspace", "main", "└ lam-2.5", "└ aaaaaaa"]
    assert [r[1] for r in body] == ["100", "100", "2.5", "0.3"]
    tr = 2 + len(labels[2:]) // 3  # rd tr-projector's first column
    assert [r[tr] for r in body] == ["0.154", "0.154", "0.31", "0.42"]
    assert body[2][tr + 3] == "refused" and body[2][2 + 3] == "champion"
    ks = tr + 4
    assert body[0][ks : ks + 3] == ["0.03", "0.04", "1"]  # chaotic: report time, not horizon


def test_a_reg_lam_experiment_shows_each_systems_effective_lam():
    """`-S reg.lam=3` multiplies every system's own λ: the column shows the product (ks's now
    differs between the states too)."""
    scaled = state("bbbbbbb1234567", "x3", 100.0, 0.2)
    scaled["data"]["params"]["params.yaml"]["data"]["reg"]["lam"] = 3.0
    record = [state("workspace", None, 100.0, 0.154), scaled]
    _, labels, body = rows(record)
    assert labels[:3] == ["experiment", "λ ks", "λ rd"]
    assert [r[1:3] for r in body] == [["10", "100"], ["30", "300"]]


def test_the_table_lines_up_and_fits_a_terminal():
    lines = table(RECORD, gates).splitlines()
    assert max(map(len, lines)) <= 200 and len(lines) == 2 + 4
    for name in ("rd ols", "rd tr-projector", "ks ols"):
        at = lines[0].index(name)
        assert lines[1][at : at + 3] == "val" and lines[1][at - 2 : at] == "  "


def test_gate_outcomes_are_read_from_each_states_commit(tmp_path):
    """gates.json is not a DVC metric (`dvc metrics show` stays narrow): the workspace's file,
    or the file as an experiment's commit holds it."""
    import json
    import subprocess

    from ml4dynamics.reporting.experiments import committed_gates

    def git(*args):
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    path = tmp_path / "metrics" / "rd" / "gates.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"ols": "refused"}))
    git("add", "-A")
    git("commit", "-qm", "one")
    rev = git("rev-parse", "HEAD")
    path.write_text(json.dumps({"ols": "champion"}))
    read = committed_gates(str(tmp_path))
    assert read(rev, "rd") == {"ols": "refused"}
    assert read("workspace", "rd") == {"ols": "champion"}
    assert read(rev, "ks") == {} and read("workspace", "ks") == {}


def test_dvc_failing_is_one_line(tmp_path):
    with pytest.raises(ML4DError, match="`dvc exp show --json` failed: "):
        shown(str(tmp_path))  # not a DVC repository


def test_systems_without_a_model_get_no_lam_column():
    """`reg.lam` scales the weight of every system params.yaml knows; only those with a model in
    the pipeline (a headline) get a λ column."""
    scaled = state("bbbbbbb1234567", "x3", 100.0, 0.2)
    for one in (scaled, base := state("workspace", None, 100.0, 0.154)):
        one["data"]["params"]["params.yaml"]["data"]["reg"]["burgers"] = {"lam": 1.0}
    scaled["data"]["params"]["params.yaml"]["data"]["reg"]["lam"] = 3.0
    _, labels, _ = rows([base, scaled])
    assert labels[:3] == ["experiment", "λ ks", "λ rd"] and "λ burgers" not in labels
