#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (Ubuntu). It installs
# the grader into a venv of its own, keeps its private parts root's alone, and grades the master
# as a student's submission: the build fails unless the master earns every point.
# The variables are for a trial outside Gradescope; Gradescope sets none of them.
set -euo pipefail
SOURCE="${AUTOGRADER_SOURCE:-/autograder/source}"
VENV="${MAKEMORE_VENV:-/opt/makemore-venv}"
# torch's CPU build: a plain `pip install torch` on Linux pulls the CUDA build, gigabytes the grader never uses
TORCH_INDEX="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"
export MAKEMORE_CACHE="$SOURCE/cache"  # names.txt and the grader's own trainings, root's alone

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ "${SKIP_APT:-0}" != 1 ]; then
    apt-get update
    # bubblewrap: the sandbox, where the container lets it run (the grader falls back to a uid of its own);
    # g++ and Python's headers: the full schedule's loss checks compile the submission's model (eager without)
    apt-get install -y --no-install-recommends python3 python3-venv python3-pip python3-dev g++ bubblewrap util-linux
fi
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install "torch==@TORCH@" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
"$VENV/bin/python" -m pip install -e "$SOURCE/project"
mkdir -p "$MAKEMORE_CACHE"
chmod -R go-rwx "$SOURCE"  # the reference, the hidden checks, the calibration: no sandbox uid reads them
"$VENV/bin/python" -m makemore_wavenet.grader.autograder setup "$SOURCE"
