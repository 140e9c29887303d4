"""The incrementality report: outcome records -> per-flow funnel, lift and its evidence.

``load`` reads records (JSON lines or the outcomes topic), ``aggregate`` counts each flow's
arms, ``stats`` compares them, ``summary`` joins the two, and ``render``/``chart``/
``writers`` print the table and write the PNG, CSV and JSON. No Faust import here.
"""

from smsflow.report.summary import FlowResult, Report, build_report

__all__ = ["FlowResult", "Report", "build_report"]
