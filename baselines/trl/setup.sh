#!/bin/bash
# Install TRL (and transformers) once into a virtual environment beside alignlab's torch:
# the venv sees the torch of `make setup` through a .pth file, so pip does not fetch torch again.
# usage: baselines/trl/setup.sh TORCH_SITE_DIR VENV_DIR
set -euo pipefail
torch_site="$1"
venv="$2"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import trl, transformers" 2>/dev/null; then
    echo "baselines: TRL already installed in $venv"
    exit 0
fi
rm -rf "$venv.partial"
python3 -m venv "$venv.partial"
site=$("$venv.partial/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$torch_site" > "$site/alignlab-torch.pth"
"$venv.partial/bin/pip" install --quiet --disable-pip-version-check -r "$(dirname "$0")/requirements.txt"
rm -rf "$venv"
mv "$venv.partial" "$venv"
# The venv's scripts name their own folder; rewrite them after the move.
sed -i "s|$venv.partial|$venv|g" "$venv"/bin/* 2>/dev/null || true
echo "baselines: TRL installed in $venv"
