"""Error types of the shared core.

Every function that takes untrusted input raises only these. ``PledgewatchError`` is the one
base; callers that must never crash on hostile input catch it and nothing broader.
"""

from __future__ import annotations


class PledgewatchError(Exception):
    """Base of every error the core raises on purpose."""


class EncodingError(PledgewatchError):
    """Bytes or values that are not in the canonical form the protocol requires."""


class ValidationError(PledgewatchError):
    """A structurally decodable value whose fields break the protocol's rules."""


class SignatureError(PledgewatchError):
    """A signature that does not verify, or a key that cannot be used."""


class ProofError(PledgewatchError):
    """Evidence that does not check out: carries what was expected and what was computed.

    ``expected`` and ``computed`` are whatever the check compared (hashes as bytes, sizes as
    ints); either may be ``None`` when the proof was rejected before anything was computed
    (for example a proof with the wrong number of hashes).
    """

    def __init__(self, message: str, *, expected: object = None, computed: object = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.computed = computed
