"""Which packages to install: found, not listed by hand (pyproject.toml holds everything else).

The folders keep short names (shared/, stages/, grader/) and install under one import prefix,
makemore_wavenet, so that nothing collides with other installed packages. pyproject.toml's
[tool.setuptools.packages.find] names what it finds after its folders and cannot add that prefix,
hence this file. Every folder with an __init__.py below those three is a package: a new
stages/stageN_xxx/ is picked up as it is, and grader/hidden/ is installed where it exists (the
master sources) and simply absent where it does not (the student edition).
"""

from pathlib import Path

from setuptools import find_packages, setup

PREFIX = "makemore_wavenet"
FOLDERS = ("shared", "stages", "grader")
HERE = Path(__file__).resolve().parent

setup(
    package_dir={f"{PREFIX}.{folder}": folder for folder in FOLDERS},
    packages=[f"{PREFIX}.{name}" for folder in FOLDERS
              for name in [folder, *(f"{folder}.{sub}" for sub in find_packages(str(HERE / folder)))]],
)
