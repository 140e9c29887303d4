"""The report: outcome records -> per-flow funnel and lift, what lasts, and the accounting.

``load`` reads records (JSON lines or the outcomes topic; malformed lines skipped with their
place), ``records`` drops repeated ``outcome_id`` s, ``aggregate`` counts each flow's arms,
``stats`` compares them, ``lasting`` measures repeat purchase and revenue 30/60/90 days after
enrollment with ``cuped`` (plain and variance-reduced lifts, minimum detectable effects),
``accounting`` balances every enrollment and send, ``money`` keeps amounts exact and per
currency, ``summary`` joins it all, and ``render``/``chart``/``writers`` print the tables and
write the PNG, CSV and JSON. No Faust import here.
"""

from smsflow.report.summary import FlowResult, Report, build_report

__all__ = ["FlowResult", "Report", "build_report"]
