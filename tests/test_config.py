"""Parameters are validated before any work: one line naming the key and the fix, exit 2,
nothing written."""

from __future__ import annotations

import pytest

from ml4dynamics.cli import main
from ml4dynamics.config import StrictLoader, load_params, parse_params
from ml4dynamics.core.errors import ConfigError
from ml4dynamics.learning import estimators
from ml4dynamics.systems import SYSTEMS
from tests.conftest import REPO, run_cli, small_params, write_params


def edit(params: dict, dotted: str, value) -> dict:
    *path, last = dotted.split(".")
    node = params
    for key in path:
        node = node[key]
    node[last] = value
    return params


BAD = [
    # (dotted key, bad value, text the message must contain)
    ("rd.system.dt", -0.01, "rd.system.dt: must be > 0 (the time step), got -0.01; set a positive"),
    ("rd.system.dt", 0.0, "rd.system.dt: must be > 0"),
    ("rd.system.n", 3, "rd.system.n: must be >= 4 grid points per side, got 3"),
    ("rd.system.gamma_u", -0.1, "rd.system.gamma_u: must be >= 0 (a diffusion coefficient)"),
    ("rd.system.n", "sixty-four", "rd.system.n: must be an integer, got 'sixty-four' (str)"),
    ("rd.system.n", 64.0, "rd.system.n: must be an integer, got 64.0 (float)"),
    ("rd.system.alpha", True, "rd.system.alpha: must be a number, got True (bool)"),
    ("rd.system.laplacian", "fd4", "rd.system.laplacian: must be one of 'fd2', 'spectral'"),
    ("rd.system.dtt", 0.01, "rd.system.dtt: unknown key; remove it or use one of: dt, n,"),
    ("rd.data.store_every", 0, "rd.data.store_every: must be >= 1"),
    ("rd.data.train.steps", 305, "rd.data.train.steps: 305 is not a multiple of store_every=10"),
    ("rd.data.test.seed", 1, "rd.data.test.seed: equals the seed of split 'train'"),
    ("rd.data.ood.system", {"gamma_u": [0.1, -0.2]}, "rd.data.ood.system.gamma_u: must be >= 0"),
    ("rd.data.ood.system", {"gamma": [0.1]}, "rd.data.ood.system.gamma: not a parameter"),
    (
        "rd.data.ood.system",
        {"gamma_u": 0.1},
        "rd.data.ood.system.gamma_u: must be a non-empty list",
    ),
    ("linear.system.ic_std", -1.0, "linear.system.ic_std: must be > 0"),
    (
        "heat",
        {"system": {}, "data": {}},
        f"heat: unknown section; use one of: {', '.join(SYSTEMS)}, manifold, train, estimators, "
        "reg,",
    ),
]

# Stage sections: each is checked by the stage that reads it (and all of them by `ml4d params`).
BAD_STAGE = [
    # estimators: each kind has exactly its own weight; TR takes lam from `reg.<system>`
    ("estimators.mols", {"kind": "mols"}, "estimators.mols: an estimator of kind 'mols' has"),
    ("estimators.ols", {"kind": "ols", "lam": 1.0}, "(lam lives in `reg.<system>`)"),
    (
        "estimators.x",
        {"kind": "ridge"},
        "estimators.x.kind: missing or unknown; use one of: dagger, aols",
    ),
    ("estimators.aols.sigma", 0.0, "estimators.aols.sigma: must be > 0 (the input-noise level"),
    ("estimators.tr-gradient.normal", "hessian", "estimators.tr-gradient.normal: must be one of"),
    ("reg.rd.lam", -1.0, "reg.rd.lam: must be >= 0"),
    # one section per system (the old shared form names the first system it lacks)
    ("reg", {"lam": 1.0, "eps": 1e-8}, "reg.linear: missing (estimators of kind 'tr' read"),
    # a shared section holds every key its kinds read (tr: lam, eps; ols-field: lam)
    ("reg.rd", {"lam": 1.0}, "reg.rd: must have exactly the keys ['lam', 'eps']"),
    ("evaluate.bound", 0.5, "evaluate.bound: must be > 1"),
    ("promote.max_error", 0.0, "promote.max_error: must be > 0"),
    ("promote", {"max_error": 0.5}, "promote: must have exactly the gate thresholds"),
    ("train.rd.model.kind", "resnet", "train.rd.model.kind: unknown kind 'resnet'"),
    ("manifold.rd.optim.lr", -1.0, "manifold.rd.optim.lr: must be > 0"),
    ("linear_theory.horizon", 0, "linear_theory.horizon: must be >= 1"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_parameter_gives_one_line_and_writes_nothing(tmp_path, capsys, key, value, message):
    params = write_params(tmp_path / "params.yaml", edit(small_params(), key, value))
    out = tmp_path / "out"
    code = main(["generate", "rd", "--params", str(params), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("ml4d: error: "), err
    assert message in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize(
    ("key", "value", "message"), BAD_STAGE, ids=[f"{k}={v!r}" for k, v, _ in BAD_STAGE]
)
def test_bad_stage_parameter_is_one_line_from_ml4d_params(tmp_path, capsys, key, value, message):
    params = write_params(tmp_path / "params.yaml", edit(small_params(), key, value))
    code = main(["params", "--params", str(params)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"ml4d: error: {params}: "), err
    assert message in err, err


def test_the_stage_that_reads_a_section_checks_it(tmp_path, capsys):
    """`ml4d train` refuses a bad TR weight before any work (and names the file and key)."""
    params = write_params(tmp_path / "params.yaml", edit(small_params(), "reg.rd.lam", -1.0))
    code = main(["train", "rd", "--estimator", "tr-projector", "--params", str(params)])
    err = capsys.readouterr().err
    assert (
        code == 2
        and err
        == f"ml4d: error: {params}: reg.rd.lam: must be >= 0 (the weight of "
        "the tangent-space penalty), got -1.0; set a value >= 0\n"
    )


def test_a_system_without_its_sections_is_told_every_one_it_lacks(tmp_path, capsys):
    """A registered system missing from params.yaml: every command that needs it names, in one
    line, each of its four sections to add; ``ml4d params`` accepts a file that leaves the
    system out altogether, and refuses one that configures it only in part."""
    params = small_params()
    del params["ks"]
    for section in ("manifold", "train", "reg"):
        del params[section]["ks"]
    path = write_params(tmp_path / "params.yaml", params)
    every = "'ks' (with 'system' and 'data'), 'manifold.ks', 'train.ks', 'reg.ks'; add them"
    for args in (["generate", "ks"], ["fit-manifold", "ks"], ["train", "ks", "--estimator", "ols"]):
        assert main([*args, "--params", str(path)]) == 2
        err = capsys.readouterr().err
        assert err == f"ml4d: error: {path} lacks the sections of system 'ks': {every}" + (
            " as the other systems have theirs (see the repository's params.yaml)\n"
        ), err
    assert main(["params", "--params", str(path)]) == 0  # ks is simply not configured
    capsys.readouterr()
    params["ks"] = small_params()["ks"]  # its system and data, nothing else
    write_params(path, params)
    assert main(["params", "--params", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "lacks the sections of system 'ks': 'manifold.ks', 'train.ks', 'reg.ks'; add" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


def test_missing_key_names_it_and_the_default(tmp_path, capsys):
    params = small_params()
    del params["rd"]["system"]["alpha"]
    code = main(["generate", "rd", "--params", str(write_params(tmp_path / "p.yaml", params))])
    assert code == 2
    assert (
        "rd.system.alpha: missing; add it to params.yaml (default 0.01)" in capsys.readouterr().err
    )


def test_unknown_system_on_the_command_line(tmp_path):
    """Through the real console script: exit code, one line, nothing written."""
    params = write_params(tmp_path / "params.yaml", small_params())
    result = run_cli(["generate", "heat", "--params", str(params)], cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr
        == f"ml4d: error: unknown system 'heat'; known systems: {', '.join(SYSTEMS)}\n"
    )
    assert not (tmp_path / "data").exists()


def test_missing_and_malformed_parameter_files(tmp_path, capsys):
    assert main(["generate", "rd", "--params", str(tmp_path / "nope.yaml")]) == 2
    assert "no parameter file at" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("rd: [unclosed\n")
    assert main(["params", "--params", str(tmp_path / "bad.yaml")]) == 2
    assert "is not valid YAML at line" in capsys.readouterr().err


NESTED_TWICE = """\
rd:
  system: {}
train:
  rd:
    optim:
      lr: 0.1
      epochs: 2
      lr: 0.2
"""


def test_a_key_given_twice_at_any_depth_is_one_error_naming_it_and_both_lines(tmp_path, capsys):
    """YAML itself keeps the last value silently; params.yaml refuses it before any parsing."""
    path = tmp_path / "params.yaml"
    path.write_text(NESTED_TWICE)
    with pytest.raises(ConfigError) as refused:
        load_params(path)
    assert str(refused.value) == (
        f"{path}: key 'train.rd.optim.lr' is given twice (lines 6 and 8); keep one"
    )
    text = write_params(path, small_params()).read_text()  # a valid file, then a section again
    line = text.count("\n") + 1
    path.write_text(text + "reg:\n  lam: 2.0\n")
    first = text.splitlines().index("reg:") + 1
    assert main(["params", "--params", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"ml4d: error: {path}: key 'reg' is given twice (lines {first} and {line}); keep one\n"
    ), err
    path.write_text("rd: {system: {dt: 0.1, dt: 0.2}}\n")  # flow style too
    with pytest.raises(ConfigError, match=r"key 'rd.system.dt' is given twice \(lines 1 and 1\)"):
        load_params(path)


def test_a_key_merged_in_may_be_overridden():
    """``<<: *anchor`` then the key itself is YAML's way to override, not a duplicate."""
    import yaml

    text = "x: &base {a: 1, b: 2}\ny:\n  <<: *base\n  a: 3\n"
    assert yaml.load(text, Loader=StrictLoader) == {"x": {"a": 1, "b": 2}, "y": {"a": 3, "b": 2}}
    with pytest.raises(ConfigError, match=r"key 'y.a' is given twice \(lines 4 and 5\)"):
        yaml.load(text + "  a: 4\n", Loader=StrictLoader)


@pytest.mark.parametrize(
    "text", ["", "\n\n", "# only comments\n# here\n", "---\n", "{}\n"], ids=repr
)
def test_an_empty_parameter_file_is_refused(tmp_path, capsys, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert main(["params", "--params", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ml4d: error: {path} is empty: "), err
    assert f"restore it with `git checkout {path}`" in err, err


@pytest.mark.parametrize(
    ("twice", "problem"), [(False, "is empty: "), (True, "key 'reg' is given twice (lines")]
)
def test_ml4d_params_refuses_a_bad_file_in_one_line(tmp_path, twice, problem):
    """Through the console script, reading ./params.yaml as a user does: a comments-only file,
    and a valid one whose section ``reg`` is given a second time."""
    path = tmp_path / "params.yaml"
    if twice:
        write_params(path, small_params())
        path.write_text(path.read_text() + "reg:\n  lam: 2.0\n")
    else:
        path.write_text("# nothing here\n")
    result = run_cli(["params"], cwd=tmp_path)
    assert result.returncode != 0 and result.stdout == "", result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"ml4d: error: params.yaml{':' if twice else ''} {problem}")


def test_the_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")  # the strict loader: no key given twice either
    rd = params.setup("rd").system
    # the paper's reaction-diffusion domain and rates, in its pattern-forming regime: the
    # uniform state is Turing-unstable (|α| = 0.001, γ_v = 2γ_u)
    from ml4dynamics.systems import ReactionDiffusion

    assert (rd.length, rd.dt, abs(rd.alpha), rd.beta) == (6.4, 0.01, 0.001, 1.0)
    assert rd.gamma_v == 2 * rd.gamma_u
    assert (ReactionDiffusion(rd).linear_growth_rates() > 0).any()
    data = params.setup("rd").data
    assert all(g > rd.gamma_u for g in data.ood.system["gamma_u"])  # ood: outside training's γ_u
    for split in (data.val, data.test, data.ood):  # rollouts of at least 30 time units
        assert split.steps * rd.dt >= 30 and split.steps > data.train.steps


def test_estimators_resolve_with_their_systems_tr_weight():
    raw = edit(small_params(), "reg.ns_channel.lam", 0.01)
    params = parse_params(raw)
    tr = estimators.estimator(params, "tr-gradient", "rd").config
    assert (tr.kind, tr.normal, tr.lam) == ("tr", "gradient", 1.0)
    assert estimators.estimator(params, "tr-gradient", "ns_channel").config.lam == 0.01
    mols = estimators.estimator(params, "mols", "rd").config
    assert mols.wd == 1.0e-4 and not hasattr(mols, "lam")  # only the keys it uses
    with pytest.raises(Exception, match="no estimator 'ridge' under 'estimators'"):
        estimators.estimator(params, "ridge", "rd")


def test_configs_are_frozen():
    setup = parse_params(small_params()).setup("rd")
    with pytest.raises(AttributeError):
        setup.system.dt = 1.0  # type: ignore[misc]


def test_ml4d_params_prints_the_resolved_configuration_as_yaml(tmp_path, capsys):
    """YAML a person (or `yaml.safe_load`) reads back: every section with its defaults filled
    in, each TR weight the effective one (reg.lam × reg.<system>.lam), then the verdict."""
    import yaml

    from ml4dynamics.cli import main

    params = small_params()
    params["reg"]["lam"] = 3.0
    path = write_params(tmp_path / "params.yaml", params)
    assert main(["params", "--params", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.endswith(f"# {path}: valid\n")
    resolved = yaml.safe_load(out)
    assert resolved["rd"]["system"]["gamma_u"] == params["rd"]["system"]["gamma_u"]
    assert resolved["rd"]["data"]["train"]["trajectories"] == 2
    assert resolved["estimators"]["rd"]["tr-projector"]["lam"] == 3.0
    assert resolved["estimators"]["rd"]["ols"] == {"kind": "ols"}
    assert set(resolved["promote"]) == set(params["promote"])
