from __future__ import annotations

from ..pip_install import PipInstall

# The same task under the other name's key; the two plugins can be used together.


class Pip3Install(PipInstall):
    reads = ("plugins.pip3_install.packages",)
    settings_key = "plugins.pip3_install.packages"
