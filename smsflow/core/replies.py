"""The one text sent back after a keyword event or a double opt-in request.

Contents follow the CTIA Messaging Principles (see shared/reference/compliance.md §3):
every reply names the brand and says what happened; opt-in confirmations and HELP also
give the message frequency, "Msg & data rates may apply" and HELP/STOP instructions; the
opt-out confirmation promises no further messages. None of them sells anything. Texts
use GSM-7 characters only (straight quotes, no emoji) so a reply is one segment for
brand names up to 20 characters with the default frequency text.
"""

from __future__ import annotations

from smsflow.core.consent import (CONFIRMATION_REQUESTED, HELP_REQUESTED, OPTED_IN,
                                  OPTED_OUT)

DEFAULT_FREQUENCY = "Msg frequency varies"
RATES = "Msg & data rates may apply"

TEMPLATES = {
    OPTED_OUT: "{brand}: You are unsubscribed and will receive no more messages. "
               "Reply START to resubscribe.",
    OPTED_IN: "{brand}: Subscribed to recurring automated marketing texts. "
              "{frequency}. {rates}. Reply HELP for help, STOP to end.",
    HELP_REQUESTED: "{brand}: Help at {help_contact}. {frequency}. {rates}. "
                    "Reply STOP to end.",
    CONFIRMATION_REQUESTED: "{brand}: Reply Y to join recurring automated marketing "
                            "texts. {frequency}. {rates}. Reply HELP for help, STOP to "
                            "end.",
}


def reply_for(kind: str, brand: str, help_contact: str, *,
              frequency: str = DEFAULT_FREQUENCY) -> str:
    """The reply for an outcome kind returned by :func:`smsflow.core.consent.apply`.

    ``help_contact`` is a toll-free number, e-mail or URL; ``frequency`` the program's
    disclosure, e.g. "Up to 4 msgs/mo".
    """
    template = TEMPLATES.get(kind)
    if template is None:
        raise ValueError(f"no reply for outcome kind {kind!r}")
    if not brand.strip() or not help_contact.strip():
        raise ValueError("brand and help_contact are required in every reply")
    return template.format(brand=brand.strip(), help_contact=help_contact.strip(),
                           frequency=frequency.strip().rstrip("."), rates=RATES)
