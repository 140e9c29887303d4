"""Classify inbound texts: opt-out, opt-in, help, double opt-in confirmation, or nothing.

The matcher is deliberately asymmetric, because the two kinds of mistake cost differently:

* **Opt-out is lenient.** Since FCC 24-18 a consumer may revoke consent "by any reasonable
  means", so besides the carrier keywords (whole message: STOP, STOPALL, UNSUBSCRIBE,
  CANCEL, END, QUIT, REVOKE, OPTOUT) we accept a keyword as any sentence of the message
  ("Stop. I never signed up"), politeness around it ("stop please"), plainly worded
  revocations ("stop texting me", "remove me from this list", "no más mensajes") and
  un-negated UNSUBSCRIBE / OPT OUT / REVOKE anywhere. Missing a revocation is a TCPA
  exposure; a wrong opt-out only loses marketing.
* **Opt-in is strict.** Only the whole message START, YES or UNSTOP: "yes thanks" in
  reply to a question must not subscribe anyone to marketing.
* **Help** is the whole message HELP / INFO / AYUDA, politeness allowed.

Words that are commands only when alone ("cancel", "end", "stop") are never matched inside
a sentence, so "cancel my order" and "when will my order stop being delayed?" are free
text. Case, accents, punctuation and emoji are ignored throughout.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

OPT_OUT = "opt_out"
OPT_IN = "opt_in"
HELP = "help"
CONFIRM = "confirm"
NONE = "none"

OPT_OUT_WORDS = {
    "stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout",
    "unsub", "remove", "parar", "alto", "cancelar", "baja", "nomas",
}
OPT_IN_WORDS = {"start", "yes", "unstop"}
HELP_WORDS = {"help", "info", "ayuda"}
CONFIRM_WORDS = {"y", "yes", "si"}
PROVIDER_TYPES = {"STOP": OPT_OUT, "START": OPT_IN, "HELP": HELP}

# Politeness and noise that may surround a keyword without changing its meaning.
FILLER = {
    "please", "pls", "plz", "now", "thanks", "thank", "you", "thx", "ty", "ok", "okay",
    "hi", "hey", "hello", "just", "it", "all", "me", "yes", "gracias", "por", "favor",
}
# A revocation verb is void when one of NEGATIONS governs it, possibly through a few
# GOVERNING words: "don't stop texting me", "I do not want to unsubscribe".
NEGATIONS = {"dont", "not", "never", "cant", "wont", "didnt", "doesnt", "shouldnt"}
GOVERNING = {"i", "want", "wanna", "to", "would", "like", "need", "ever", "please", "you",
             "me", "going", "gonna"}
NEGATION_REACH = 4

_MSG = (r"(?:texts?|txts?|messages?|msgs?|sms|notifications?|alerts?|spam|promos?|"
        r"promotions?|ads|marketing|offers)")
_PRONOUN = r"(?:me|us|my\s+(?:number|phone)|this\s+number)"
_HALT = r"(?:stop|quit|cease)"
# (pattern, negatable): a negatable pattern is void under a negation (see NEGATIONS);
# the others carry their own negation ("don't text me").
REVOCATIONS = [
    (rf"\b{_HALT}\s+(?:texting|txting|messaging|spamming|contacting|bugging|harassing)\b",
     True),
    (rf"\b{_HALT}\s+sending\s+(?:me|us|(?:\w+\s+){{0,2}}?{_MSG})\b", True),
    (rf"\b{_HALT}\s+(?:(?:all|the|these|those|this|your|ur|with)\s+){{0,2}}{_MSG}\b", True),
    (r"\b(?:unsubscribe|unsub|opt\s*out|revoke)\b", True),
    (rf"\b(?:remove|delete)\s+{_PRONOUN}\b", True),
    (rf"\b(?:take|drop|get)\s+{_PRONOUN}\s+(?:off|from|out)\b", True),
    (rf"\bno\s+more\s+(?:\w+\s+)?{_MSG}\b", False),
    (r"\b(?:dont|do\s+not|never)\s+(?:text|txt|message|msg|sms|contact)\w*\s+(?:me|us)\b",
     False),
    (rf"\b(?:dont|do\s+not|never)\s+send\s+(?:me|us)\s+(?:\w+\s+){{0,2}}?"
     rf"(?:{_MSG}|anymore)\b", False),
    (r"\bleave\s+me\s+alone\b", False),
    (r"\bwrong\s+(?:number|person)\b", False),
    # Spanish
    (r"\bno\s+mas\s+(?:mensajes|textos|sms|msjs?)\b", False),
    (r"\b(?:dar|darme|darse|den|denme)\s+de\s+baja\b", False),
    (r"\b(?:no|ya\s+no)\s+(?:me\s+)?(?:envie|envien|envies|manden|mande|mandes|escriban|"
     r"escribas)\s+(?:mas|mensajes|textos|sms)\b", False),
    (r"\b(?:ya\s+)?no\s+quiero\s+(?:recibir|mas\s+mensajes|mensajes|textos)\b", False),
    (r"\b(?:dejen|deja|dejar)\s+de\s+(?:enviarme|mandarme|escribirme|"
     r"(?:enviar|mandar)\s+(?:mensajes|textos|sms))\b", False),
    (r"\bcancelar\s+(?:la\s+)?(?:suscripcion|mensajes)\b", False),
]
_REVOCATIONS = [(re.compile(pattern), negatable) for pattern, negatable in REVOCATIONS]
_SENTENCE_BREAK = re.compile(r"[.!?;,:\n\r]+")


@dataclass(frozen=True)
class Keyword:
    """What an inbound text asks for; ``word`` is the matched keyword or phrase, upper-case."""

    kind: str = NONE
    word: str = ""
    by_provider: bool = False   # Twilio matched it (OptOutType) and already acted/replied


def classify(body: str | None, *, awaiting_confirmation: bool = False) -> Keyword:
    """Classify a whole inbound message.

    ``awaiting_confirmation`` is true while the phone has a pending double opt-in; then
    Y / YES / SI confirm it (a bare "Y" means nothing otherwise).
    """
    text = normalize_text(body or "")
    if not text:
        return Keyword()
    opt_out = _opt_out_word(body or "")
    if opt_out:
        return Keyword(OPT_OUT, opt_out)
    whole = text.replace(" ", "")
    if awaiting_confirmation and whole in CONFIRM_WORDS:
        return Keyword(CONFIRM, whole.upper())
    if whole in OPT_IN_WORDS:
        return Keyword(OPT_IN, whole.upper())
    polite = _strip_filler(text)
    if polite in HELP_WORDS:
        return Keyword(HELP, polite.upper())
    return Keyword()


def classify_inbound(body: str | None, opt_out_type: str | None = None, *,
                     awaiting_confirmation: bool = False) -> Keyword:
    """Combine Twilio's ``OptOutType`` (Advanced Opt-Out) with our own matcher.

    Twilio only matches single whole-body keywords, so our broader opt-out match wins;
    otherwise the provider's verdict stands (it has already changed its block list).
    """
    own = classify(body, awaiting_confirmation=awaiting_confirmation)
    provider_word = (opt_out_type or "").strip().upper()
    provider_kind = PROVIDER_TYPES.get(provider_word)
    if provider_kind is None:
        return own
    if own.kind == OPT_OUT:
        return Keyword(OPT_OUT, own.word, by_provider=provider_kind == OPT_OUT)
    if provider_kind == OPT_IN and own.kind == CONFIRM:
        return Keyword(CONFIRM, own.word, by_provider=True)
    return Keyword(provider_kind, provider_word, by_provider=True)


def normalize_text(body: str) -> str:
    """Lower-case ASCII words: accents folded, apostrophes dropped, everything else a space."""
    folded = unicodedata.normalize("NFKD", body)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).casefold()
    folded = re.sub(r"['\u2018\u2019\u02bc`]", "", folded)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", folded).split())


def _opt_out_word(body: str) -> str | None:
    """The opt-out keyword or revocation phrase of any sentence of ``body``, if one."""
    for sentence in _SENTENCE_BREAK.split(body):
        text = normalize_text(sentence)
        word = _strip_filler(text)
        if word in OPT_OUT_WORDS:
            return word.upper()
        tokens = text.split()
        for pattern, negatable in _REVOCATIONS:
            for match in pattern.finditer(text):
                if negatable and _negated(tokens, text[: match.start()].count(" ")):
                    continue
                return match.group(0).upper()
    return None


def _strip_filler(text: str) -> str:
    """Join the non-filler words, dropping repeats: "stop stop please" -> "stop"."""
    words: list[str] = []
    for word in text.split():
        if word not in FILLER and word not in words:
            words.append(word)
    return "".join(words)


def _negated(tokens: list[str], index: int) -> bool:
    """True if a negation governs ``tokens[index]`` (through GOVERNING words only)."""
    for back in range(index - 1, max(-1, index - 1 - NEGATION_REACH), -1):
        if tokens[back] in NEGATIONS:
            return True
        if tokens[back] not in GOVERNING:
            return False
    return False
