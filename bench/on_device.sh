#!/usr/bin/env bash
# One call of the device tool, from the repository root there: the tool copies files, not
# .git, so the commits come as a bundle carried in .whl/ (`git bundle create
# .whl/repo.bundle main`) and are checked out in .dev/r, where --conv3d-against can read
# them; the plugin loads from that tree (PYTEST_PLUGINS, no install), and Triton's cache
# in .dev/ is kept between warm calls. REF names the carried branch to check out (default
# main; bundle it too: `git bundle create .whl/repo.bundle main v24`).
# Usage: [REF=branch] bash bench/on_device.sh COMMAND...
set -uo pipefail
here=$(pwd)
mkdir -p .dev
export TRITON_CACHE_DIR="$here/.dev/triton" PYTEST_PLUGINS=pytest_conv3d_perf.plugin
export PYTHONUNBUFFERED=1
if [ ! -d .dev/r/.git ]; then
    git clone -q "$here/.whl/repo.bundle" .dev/r || exit 1
fi
cd .dev/r || exit 1
ref=${REF:-main}
git fetch -q "$here/.whl/repo.bundle" "+refs/heads/*:refs/remotes/carried/*" || exit 1
git checkout -q --detach "carried/$ref" || exit 1
git worktree prune
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
echo "# on_device: $(git log -1 --format='%h %s' | cut -c1-100)"
"$@"
