import pytest

from smsflow.core.keywords import Keyword, classify, classify_inbound, normalize_text

OPT_OUTS = [
    # carrier keywords, whole message, any case / punctuation / emoji
    ("STOP", "STOP"), ("stop.", "STOP"), ("Stop!!!", "STOP"), ("STOP 🛑", "STOP"),
    ("  stop  ", "STOP"), ("STOPALL", "STOPALL"), ("Unsubscribe", "UNSUBSCRIBE"),
    ("cancel", "CANCEL"), ("End", "END"), ("quit", "QUIT"), ("REVOKE", "REVOKE"),
    ("OPTOUT", "OPTOUT"), ("opt-out", "OPTOUT"), ("Opt out", "OPTOUT"),
    # politeness around a keyword, or a keyword as one sentence of a longer text
    ("stop please", "STOP"), ("Please stop", "STOP"), ("STOP STOP STOP", "STOP"),
    ("stop all", "STOP"), ("Stop. I never signed up for this", "STOP"),
    ("STOP\nSent from my iPhone", "STOP"), ("Ok, cancel", "CANCEL"),
    # plainly worded revocations
    ("stop texting me", "STOP TEXTING"), ("please unsubscribe me", "UNSUBSCRIBE"),
    ("no more texts", "NO MORE TEXTS"), ("remove me from this list", "REMOVE ME"),
    ("don't text me", "DONT TEXT ME"), ("Don’t text me again!", "DONT TEXT ME"),
    ("Do not message me again", "DO NOT MESSAGE ME"),
    ("take me off your list", "TAKE ME OFF"), ("I want to unsubscribe", "UNSUBSCRIBE"),
    ("How do I unsubscribe?", "UNSUBSCRIBE"), ("stop sending me these", "STOP SENDING ME"),
    ("stop the texts", "STOP THE TEXTS"), ("not interested, unsubscribe", "UNSUBSCRIBE"),
    ("no more promo messages pls", "NO MORE PROMO MESSAGES"),
    ("wrong number", "WRONG NUMBER"), ("leave me alone", "LEAVE ME ALONE"),
    ("please delete my number", "DELETE MY NUMBER"),
    # Spanish
    ("PARAR", "PARAR"), ("Alto", "ALTO"), ("CANCELAR", "CANCELAR"), ("baja", "BAJA"),
    ("No más mensajes", "NO MAS MENSAJES"), ("no más", "NOMAS"),
    ("quiero darme de baja", "DARME DE BAJA"),
    ("no me envíen más mensajes", "NO ME ENVIEN MAS"),
    ("ya no quiero recibir mensajes", "YA NO QUIERO RECIBIR"),
]

NOT_OPT_OUTS = [
    "don't stop", "Don't stop!", "please don't stop texting me",
    "I do not want to unsubscribe", "I can't stop laughing",
    "when will my order stop being delayed?", "stop by the store later",
    "Can I cancel my order?", "cancel my order", "When does the sale end?", "The end",
    "quit my job lol", "Why did my tracking updates stop sending?",
    "stop sending the package to my old address", "take me to the store",
    "Stopp", "ya no quiero el producto", "don't send me the receipt by email",
    "no", "thanks!", "🙂", "", "   ", "I love these texts",
]


@pytest.mark.parametrize("body, word", OPT_OUTS)
def test_opt_out(body, word):
    assert classify(body) == Keyword("opt_out", word)


@pytest.mark.parametrize("body", NOT_OPT_OUTS)
def test_not_an_opt_out(body):
    assert classify(body).kind != "opt_out"


def test_the_tables_are_large_enough_to_mean_something():
    assert len(OPT_OUTS) + len(NOT_OPT_OUTS) >= 60


@pytest.mark.parametrize("body, word", [
    ("START", "START"), ("Yes!", "YES"), ("yes", "YES"), ("YES 👍", "YES"),
    ("unstop", "UNSTOP"), ("Un-stop", "UNSTOP"),
])
def test_opt_in_is_the_whole_message(body, word):
    assert classify(body) == Keyword("opt_in", word)


@pytest.mark.parametrize("body", ["start please", "yes please send tracking",
                                  "yes thank you", "Y", "Sí", "start the return"])
def test_opt_in_is_strict(body):
    assert classify(body).kind == "none"


@pytest.mark.parametrize("body, word", [
    ("HELP", "HELP"), ("help!", "HELP"), ("info", "INFO"), ("Ayuda", "AYUDA"),
    ("help me please", "HELP"), ("hi, help", "HELP"),
])
def test_help(body, word):
    assert classify(body) == Keyword("help", word)


@pytest.mark.parametrize("body", ["more info", "help me find my order",
                                  "can you help with returns?"])
def test_help_must_stand_alone(body):
    assert classify(body).kind == "none"


@pytest.mark.parametrize("body, word", [("Y", "Y"), ("yes", "YES"), ("Sí", "SI"),
                                        ("y.", "Y")])
def test_confirm_only_while_a_double_opt_in_is_pending(body, word):
    assert classify(body, awaiting_confirmation=True) == Keyword("confirm", word)


def test_opt_out_wins_over_everything_else():
    assert classify("yes stop", awaiting_confirmation=True).kind == "opt_out"
    assert classify("HELP. STOP").kind == "opt_out"


def test_provider_stop_is_an_opt_out_even_if_our_matcher_disagrees():
    assert classify_inbound("STOP", "STOP") == Keyword("opt_out", "STOP", by_provider=True)
    assert classify_inbound("odd body", "stop") == Keyword("opt_out", "STOP",
                                                           by_provider=True)


def test_our_broader_opt_out_beats_a_provider_start_or_help():
    assert classify_inbound("stop texting me", "START") == Keyword("opt_out", "STOP TEXTING")


def test_provider_start_and_help():
    assert classify_inbound("START", "START") == Keyword("opt_in", "START", by_provider=True)
    assert classify_inbound("HELP", "HELP") == Keyword("help", "HELP", by_provider=True)


def test_provider_start_on_a_pending_yes_confirms():
    found = classify_inbound("YES", "START", awaiting_confirmation=True)
    assert found == Keyword("confirm", "YES", by_provider=True)


def test_without_provider_signal_our_verdict_stands():
    assert classify_inbound("info", None) == Keyword("help", "INFO")
    assert classify_inbound(None, "") == Keyword()


def test_normalize_text_folds_case_accents_apostrophes_and_symbols():
    assert normalize_text("  Don’t ¡NO MÁS! 🛑 texts…") == "dont no mas texts"
