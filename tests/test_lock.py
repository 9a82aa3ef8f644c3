"""What the README's install commands install, read from ``uv.lock`` (its markers and wheel sizes):

- ``uv run`` / ``uv sync`` (the locked environment: the project, its dependencies and the dev
  group) on Linux x86_64 with CPython 3.11: the download the README states, and how much of it is
  CUDA (the ``nvidia-*`` / ``cuda-*`` libraries and triton);
- ``uv pip install --torch-backend cpu -e . --group dev``: the CPU build of torch has no CUDA
  dependencies, so the CPU-only path drops all of them only if nothing but torch requires them;
- ``uv sync --extra X``: every extra the README installs is one of the lock's; the MLflow UI's
  version is the locked client's.

Nothing is downloaded: the lock holds each wheel's size.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.markers import Marker

tomllib = pytest.importorskip("tomllib", reason="Python 3.11's tomllib")

REPO = Path(__file__).resolve().parents[1]
# the platform of the README's figures: Linux x86_64, CPython 3.11
ENV = {
    "python_full_version": "3.11.9",
    "python_version": "3.11",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "extra": "",
}
CUDA = re.compile(r"^(nvidia-|cuda-|triton$)")


@pytest.fixture(scope="module")
def lock() -> dict[str, list[dict]]:
    packages: dict[str, list[dict]] = {}
    for p in tomllib.loads((REPO / "uv.lock").read_text())["package"]:
        packages.setdefault(p["name"], []).append(p)
    return packages


def _applies(marker: str | None) -> bool:
    return marker is None or Marker(marker).evaluate(ENV)


def _entry(lock: dict[str, list[dict]], dep: dict) -> dict:
    """The lock entry a dependency names: by version, else the one whose resolution markers apply."""
    found = lock[dep["name"]]
    if "version" in dep:
        found = [p for p in found if p["version"] == dep["version"]]
    if len(found) > 1:
        found = [p for p in found if any(_applies(m) for m in p.get("resolution-markers", []))]
    assert len(found) == 1, dep
    return found[0]


def installed(lock: dict[str, list[dict]], roots: list[dict]) -> dict[str, tuple[dict, set[str]]]:
    """name -> (lock entry, names of the packages that require it), from ``roots`` down."""
    out: dict[str, tuple[dict, set[str]]] = {}
    todo = [("videoattn", d) for d in roots]
    while todo:
        parent, dep = todo.pop()
        if not _applies(dep.get("marker")):
            continue
        entry = _entry(lock, dep)
        seen = dep["name"] in out
        out.setdefault(dep["name"], (entry, set()))[1].add(parent)
        deps = [] if seen else list(entry.get("dependencies", []))
        for extra in dep.get("extra", []):  # torch's cuda-toolkit[cublas, ...]
            deps += entry.get("optional-dependencies", {}).get(extra, [])
        todo += [(dep["name"], d) for d in deps]
    return out


def _wheel_size(entry: dict) -> int:
    """The size of the wheel pip / uv pick on Linux x86_64 for CPython 3.11."""
    for wheel in entry.get("wheels", []):
        name = wheel["url"].rsplit("/", 1)[-1]
        py, abi, plat = name[:-4].split("-")[-3:]
        py_ok = any(t in ("cp311", "py3", "py311", "py2.py3") or t.startswith("py3") for t in py.split("."))
        abi_ok = abi in ("cp311", "abi3", "none")
        plat_ok = plat == "any" or ("x86_64" in plat and "linux" in plat)
        if (py_ok or abi == "abi3") and abi_ok and plat_ok:
            return wheel["size"]
    return entry.get("sdist", {}).get("size", 0)


def _default_install(lock):
    project = lock["videoattn"][0]
    return installed(lock, [*project["dependencies"], *project["dev-dependencies"]["dev"]])


def _readme_install_text() -> str:
    text = (REPO / "README.md").read_text()
    return text[text.index("The first `uv run` installs") :][:800]


def test_the_default_install_downloads_what_the_readme_says(lock):
    """README: "about 3.2 GB of wheels (torch 0.54 GB, the CUDA libraries and triton 2.45 GB ...)"."""
    pkgs = _default_install(lock)
    sizes = {name: _wheel_size(entry) for name, (entry, _) in pkgs.items()}
    total, torch, cuda = (
        sum(sizes.values()) / 1e9,
        sizes["torch"] / 1e9,
        sum(s for n, s in sizes.items() if CUDA.match(n)) / 1e9,
    )
    said = re.search(
        r"about ([\d.]+) GB of\s+wheels\*\* \(torch ([\d.]+) GB, the CUDA libraries and triton ([\d.]+) GB",
        _readme_install_text(),
    )
    assert said, "the README's install sizes"
    for name, measured, stated in zip(
        ("total", "torch", "CUDA"), (total, torch, cuda), map(float, said.groups()), strict=True
    ):
        assert abs(measured - stated) <= 0.05 * stated, f"{name}: {measured:.2f} GB in uv.lock, {stated} in the README"


def test_only_torch_requires_cuda_so_the_cpu_build_drops_all_of_it(lock):
    """The CPU-only install replaces torch (and torchvision) by the CPU builds, which require no
    CUDA package: every CUDA package of the locked install must hang on torch alone."""
    pkgs = _default_install(lock)
    cuda = {name: parents for name, (_, parents) in pkgs.items() if CUDA.match(name)}
    assert cuda, "no CUDA packages: the README's CUDA paragraph is out of date"
    for name, parents in cuda.items():
        others = {p for p in parents if p != "torch" and not CUDA.match(p)}  # CUDA packages require each other
        assert not others, f"{name} is required by {sorted(others)}, not only by torch"
    torchvision = pkgs["torchvision"][0]
    assert not [d["name"] for d in torchvision["dependencies"] if CUDA.match(d["name"])]


def test_the_cpu_only_commands_install_the_project_and_its_dev_group():
    """`uv pip install --torch-backend cpu -e . --group dev`: the group exists, and the lock's
    PyTorch index is PyPI (the CPU wheels come from --torch-backend, not from the lock)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "dev" in pyproject["dependency-groups"]
    assert "uv pip install --torch-backend cpu -e . --group dev" in (REPO / "README.md").read_text()
    assert "index" not in pyproject.get("tool", {}).get("uv", {})  # no index pinned that would override the backend


def test_every_extra_the_readme_installs_is_locked(lock):
    readme = (REPO / "README.md").read_text()
    extras = set(re.findall(r"uv sync (?:--\S+ )*--extra (\w+)", readme)) | set(re.findall(r"--extra (\w+)", readme))
    locked = set(lock["videoattn"][0]["optional-dependencies"])
    assert extras and extras <= locked, extras - locked


def test_the_mlflow_ui_command_runs_the_locked_client_version(lock):
    """The UI (the full ``mlflow`` package, added by ``uv run --with``) reads the store the locked
    ``mlflow-skinny`` wrote: the same version."""
    pinned = re.findall(r"uv run --with mlflow==(\S+) mlflow ui", (REPO / "README.md").read_text())
    assert pinned == [lock["mlflow-skinny"][0]["version"]]
