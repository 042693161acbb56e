"""govmigrate: move ministry mail servers and PBX extensions onto central government infrastructure."""

__version__ = "0.1.0"
