"""vzstages: build Debian disk images from bootstrap-vz manifests, one cached stage at a time."""

__version__ = "0.1.0"
