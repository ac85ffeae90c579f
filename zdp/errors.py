"""Error types of the core. Each message is one line that says what is wrong and what to do."""


class ZdpError(Exception):
    """Base of every error a user may see. `str(err)` is the one line shown to them."""


class ConfigError(ZdpError):
    """The engine configuration (apps, approvers, policy) is missing or malformed."""


class ReleaseError(ZdpError):
    """A release manifest or envelope cannot be read or created."""


class ReleaseVerificationError(ReleaseError):
    """A signed release failed verification; the message names the reason."""


class SigningKeyError(ZdpError):
    """A signing key cannot be generated, read or decrypted."""


class PlatformError(ZdpError):
    """A runtime or traffic router failed; retryable unless it says otherwise."""
