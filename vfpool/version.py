"""Version information, read from the installed package metadata by pbr."""

import pbr.version

version_info = pbr.version.VersionInfo('vfpool')
