"""E-mail addresses as the broker compares them: invitations and allowlists name ASCII addresses.

Unicode has look-alikes that case folding or NFKC turn into ASCII letters (the Kelvin sign `K`
becomes `k`), so an address that is not plain ASCII as Webex reports it never matches anything:
comparing it would let one account pass for another.
"""

import unicodedata


def comparable(address: str | None) -> str | None:
    """The form to compare (NFKC, case-folded, trimmed), or None when it is not plain ASCII."""
    if not address:
        return None
    raw = address.strip()
    folded = unicodedata.normalize("NFKC", raw).casefold()
    if not (raw.isascii() and folded.isascii()):
        return None
    return folded
