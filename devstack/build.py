"""Build the deployable source folder of each function.

Cloud Functions upload only the folder given as --source, so each one gets its `main.py`, a
`requirements.txt` with the runtime dependencies pinned in pyproject.toml, and a copy of
`shared/`. Used by cloudbuild.yaml and by the tests that start each folder on its own.

    python -m devstack.build --out build/functions
"""

from __future__ import annotations

import argparse
import shutil
import tomllib
from pathlib import Path

from devstack.functions import FUNCTIONS

ROOT = Path(__file__).resolve().parent.parent


def runtime_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def build(out: Path, names: tuple[str, ...] = FUNCTIONS) -> list[Path]:
    requirements = "\n".join(runtime_requirements()) + "\n"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    folders = []
    for name in names:
        folder = out / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shutil.copy2(ROOT / "functions" / name / "main.py", folder / "main.py")
        shutil.copytree(ROOT / "shared", folder / "shared", ignore=ignore)
        (folder / "requirements.txt").write_text(requirements)
        folders.append(folder)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "functions")
    args = parser.parse_args()
    for folder in build(args.out):
        print(f"built {folder}")


if __name__ == "__main__":
    main()
