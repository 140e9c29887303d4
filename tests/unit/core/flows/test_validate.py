"""Validator errors name the file, line and column a marketer must fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

from smsflow.core.flows import load_dir, load_file

GOOD = """\
id: cart
category: marketing
trigger:
  event: Checkout Started
entity_key: checkout_id
exit:
  events:
    - {event: Order Placed, match_entity: true}
steps:
  - id: wait_1
    wait: {duration: 30m}
  - id: reminder
    send:
      body: "Hi {{ profile.traits.first_name | default: 'there' }}: {{ link.short }}"
      link: "{{ cart.checkout_url }}"
"""


def errors_of(tmp_path: Path, text: str, name: str = "flow.yaml") -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return [str(e) for e in load_file(path).errors]


def only(tmp_path: Path, text: str) -> str:
    found = errors_of(tmp_path, text)
    assert len(found) == 1, found
    return found[0].replace(str(tmp_path) + "/", "")


def test_good_flow_has_no_errors(tmp_path):
    assert errors_of(tmp_path, GOOD) == []


def test_yaml_syntax_error(tmp_path):
    assert only(tmp_path, "id: cart\nsteps: [a, b\ncategory: x\n").startswith(
        "flow.yaml:3:9: YAML syntax error:")


def test_empty_file(tmp_path):
    assert only(tmp_path, "") == "flow.yaml:1:1: empty flow file"


def test_duplicate_key(tmp_path):
    assert only(tmp_path, GOOD + "category: transactional\n") == \
        "flow.yaml:16:1: duplicate key 'category'"


def test_unknown_field_with_suggestion(tmp_path):
    text = GOOD.replace("      link:", "      chanel: sms\n      link:")
    assert only(tmp_path, text) == "flow.yaml:15:7: unknown field 'chanel'; did you mean 'channel'?"


def test_unknown_top_level_field(tmp_path):
    assert only(tmp_path, GOOD + "holdot: 0.1\n") == \
        "flow.yaml:16:1: unknown field 'holdot'; did you mean 'holdout'?"


def test_missing_required_field(tmp_path):
    text = GOOD.replace("category: marketing\n", "")
    assert only(tmp_path, text) == "flow.yaml:1:1: missing required field 'category' in flow"


def test_bad_duration(tmp_path):
    assert only(tmp_path, GOOD.replace("30m", "30 minutes")) == \
        "flow.yaml:11:22: bad duration '30 minutes' (use e.g. 45s, 30m, 2h, 3d, 1w or 1h30m)"


def test_holdout_out_of_range(tmp_path):
    assert only(tmp_path, GOOD + "holdout: 0.6\n") == \
        "flow.yaml:16:10: holdout must be at most 0.5 (got 0.6)"


def test_bad_time_of_day(tmp_path):
    assert only(tmp_path, GOOD + 'send_window: {start: "9am", end: 21:00}\n') == \
        "flow.yaml:16:22: bad time '9am' (use a quoted 24-hour \"HH:MM\")"


def test_bad_enum(tmp_path):
    assert only(tmp_path, GOOD.replace("marketing", "promo")) == \
        "flow.yaml:2:11: 'promo' is not one of: marketing, transactional"


def test_unknown_operator_and_condition_path(tmp_path):
    text = GOOD.replace("  event: Checkout Started\n", "  event: Checkout Started\n"
                        "  conditions:\n    properties.value: {greater: 3}\n    value: 1\n")
    found = errors_of(tmp_path, text)
    assert [e.split(":", 1)[1] for e in found] == [
        "6:24: unknown operator 'greater' (use eq, ne, gt, gte, lt, lte, in, not_in, contains, "
        "exists); did you mean 'gte'?",
        "7:5: unknown condition path 'value' (paths start with event., properties., profile., "
        "trigger., cart.; combine with any/all/not)",
    ]


def test_step_needs_one_kind(tmp_path):
    text = GOOD.replace("    wait: {duration: 30m}\n", "")
    assert only(tmp_path, text) == ("flow.yaml:10:5: step 'wait_1' needs exactly one of wait, "
                                    "wait_until, send, branch, split, exit (found none)")


def test_reserved_step_id(tmp_path):
    assert only(tmp_path, GOOD.replace("id: wait_1", "id: exit")) == \
        "flow.yaml:10:9: 'exit' is reserved (it ends the flow); pick another step id"


def test_undefined_liquid_variable_points_into_the_body(tmp_path):
    text = GOOD.replace("{{ link.short }}", "{{ customer.name }} {{ link.short }}")
    assert only(tmp_path, text) == ("flow.yaml:14:72: undefined variable 'customer.name' in template "
                                     "(use profile., trigger., cart., event., link., flow.)")


def test_liquid_error_in_literal_block(tmp_path):
    text = GOOD.replace(
        '      body: "Hi {{ profile.traits.first_name | default: \'there\' }}: {{ link.short }}"\n',
        "      body: |\n        Hi there,\n        {{ link.short }} {{ cart.total | money }}\n")
    assert only(tmp_path, text) == "flow.yaml:16:42: unknown Liquid filter 'money'"


def test_liquid_syntax_error(tmp_path):
    text = GOOD.replace("{{ link.short }}", "{{ link.short }")
    assert only(tmp_path, text) == \
        "flow.yaml:14:69: Liquid syntax error: expected '}}', found end of file"


def test_unknown_step_reference(tmp_path):
    text = GOOD + "    next: wait_2\n"
    assert only(tmp_path, text) == "flow.yaml:16:11: unknown step 'wait_2'; did you mean 'wait_1'?"


def test_unreachable_step(tmp_path):
    text = GOOD.replace("  - id: reminder", "  - id: done\n    exit: {}\n  - id: reminder")
    assert only(tmp_path, text) == "flow.yaml:14:9: step 'reminder' is unreachable (no step leads to it)"


def test_loop_is_rejected(tmp_path):
    text = GOOD + "    next: wait_1\n"
    assert only(tmp_path, text) == ("flow.yaml:12:9: step 'reminder' leads back to 'wait_1': "
                                    "flows must not loop (step ids key each send)")


def test_duplicate_step_id(tmp_path):
    text = GOOD.replace("id: reminder", "id: wait_1")
    assert only(tmp_path, text) == "flow.yaml:12:9: duplicate step id 'wait_1'"


def test_marketing_flow_with_waits_needs_exit_events(tmp_path):
    text = GOOD.replace("exit:\n  events:\n    - {event: Order Placed, match_entity: true}\n", "")
    assert only(tmp_path, text).startswith(
        "flow.yaml:7:5: marketing flow waits (step 'wait_1') but has no exit events")


def test_more_than_one_link(tmp_path):
    text = GOOD.replace("{{ link.short }}", "{{ link.short }} or https://shop.example/sale")
    assert only(tmp_path, text) == ("flow.yaml:14:13: a send step carries one link: put the "
                                    "call-to-action URL in 'link' and write {{ link.short }} in the body")


def test_link_must_be_used_and_defined(tmp_path):
    assert only(tmp_path, GOOD.replace(": {{ link.short }}", "")) == \
        "flow.yaml:15:13: the link is never used: write {{ link.short }} in the body"
    text = GOOD.replace('      link: "{{ cart.checkout_url }}"\n', "")
    assert only(tmp_path, text) == "flow.yaml:14:13: the body uses link.* but the step has no 'link'"


def test_match_entity_needs_entity_key(tmp_path):
    assert only(tmp_path, GOOD.replace("entity_key: checkout_id\n", "")) == \
        "flow.yaml:7:43: match_entity needs the flow's entity_key"


def test_mms_needs_media(tmp_path):
    text = GOOD.replace("    send:\n", "    send:\n      channel: mms\n")
    assert only(tmp_path, text) == "flow.yaml:14:16: an mms step needs media_urls"


def test_yaml_12_scalars_keep_times_and_codes_as_strings(tmp_path):
    text = GOOD + "send_window: {start: 09:00, end: 21:00}\n"
    assert errors_of(tmp_path, text) == []


def test_duplicate_flow_ids_across_files(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    result = load_dir(tmp_path)
    assert [str(e).replace(str(tmp_path) + "/", "") for e in result.errors] == [
        "b.yaml:1:5: duplicate flow id 'cart' (first defined at a.yaml:1:5)"]
    assert len(result.flows) == 1 and result.files == 2


def test_every_error_in_a_folder_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD.replace("30m", "soon"))
    (tmp_path / "b.yml").write_text(GOOD.replace("id: cart", "id: cart_b").replace("marketing", "x"))
    (tmp_path / "notes.txt").write_text("ignored")
    result = load_dir(tmp_path)
    assert len(result.errors) == 2 and result.files == 2 and not result.ok


def test_missing_directory(tmp_path):
    result = load_dir(tmp_path / "nope")
    assert [e.message for e in result.errors] == ["not a directory"]
