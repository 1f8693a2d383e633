"""Locating the Debian tools the generators drive, with errors that name the package to install."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import MissingToolError

__all__ = ["APT_PACKAGES", "SOUNDFONTS", "find_soundfont", "require_tool"]

# tool -> Debian package that provides it
APT_PACKAGES = {
    "espeak-ng": "espeak-ng",
    "flite": "flite",
    "festival": "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts",
    "text2wave": "festival",
    "sox": "sox libsox-fmt-all",
    "fluidsynth": "fluidsynth",
    "fortune": "fortune-mod fortunes-min",
}

SOUNDFONTS = {
    "FluidR3_GM": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
    "TimGM6mb": ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),
    "MuseScore_General": ("/usr/share/sounds/sf3/MuseScore_General_Full.sf3", "musescore-general-soundfont"),
}


def require_tool(name: str) -> str:
    """Return the absolute path of command ``name`` or raise MissingToolError naming its Debian package."""
    path = shutil.which(name)
    if path is None:
        pkg = APT_PACKAGES.get(name, name)
        raise MissingToolError(
            f"the command {name!r} is not installed; install it with: sudo apt-get install -y {pkg} "
            "(the README's set-up commands do this)"
        )
    return path


def find_soundfont(name: str) -> Path:
    """Return the path of a known soundfont (a key of :data:`SOUNDFONTS`) or raise MissingToolError."""
    if name not in SOUNDFONTS:
        raise MissingToolError(f"unknown soundfont {name!r}; known: {sorted(SOUNDFONTS)}")
    path, pkg = SOUNDFONTS[name]
    p = Path(path)
    if not p.is_file():
        raise MissingToolError(f"soundfont {name} not found at {p}; install it with: sudo apt-get install -y {pkg}")
    return p
