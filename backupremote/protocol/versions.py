"""API versions this build of backupremote speaks."""

from backupremote import __version__

#: Every API version this build supports, oldest first.
SUPPORTED_API_VERSIONS: tuple[int, ...] = (1,)

#: The version a client of this build asks for.
CURRENT_API_VERSION: int = SUPPORTED_API_VERSIONS[-1]

#: The software version reported by ``capabilities`` and ``auth``.
SOFTWARE_VERSION: str = __version__
