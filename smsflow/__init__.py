"""smsflow: Kafka-native SMS/MMS lifecycle messaging on faust-streaming.

Package map:
  smsflow.core      pure decision logic (no Faust import): phones, consent, keywords,
                    profiles, flows, timers, gate rules, segments, holdouts, statistics
  smsflow.commands  the `smsflow` CLI sub-commands (auto-discovered)
  streams           the Faust app and its wiring (settings, topics, tables, lanes, commit protocol)
  agents            one thin module per Faust agent
"""

__version__ = "0.1.0"
