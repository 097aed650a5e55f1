"""E-mail addresses as the broker compares them: invitations and allowlists name ASCII addresses.

Unicode has look-alikes that case folding or NFKC turn into ASCII letters (the Kelvin sign `K`
becomes `k`), so an address that is not plain ASCII as Webex reports it never matches anything:
comparing it would let one account pass for another.
"""

import re
import unicodedata

# One @, something before it, and a domain with a dot and no spaces: enough to refuse what could never be
# the address Webex reports for a person, without pretending to validate RFC 5322.
_ADDRESS = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


def comparable(address: str | None) -> str | None:
    """The form to compare (NFKC, case-folded, trimmed), or None when it is not plain ASCII."""
    if not address:
        return None
    raw = address.strip()
    folded = unicodedata.normalize("NFKC", raw).casefold()
    if not (raw.isascii() and folded.isascii()):
        return None
    return folded


def plausible(address: str) -> bool:
    """Whether a Webex account could have this address: an invitation bound to anything else could never be used."""
    folded = comparable(address)
    return folded is not None and _ADDRESS.fullmatch(folded) is not None
