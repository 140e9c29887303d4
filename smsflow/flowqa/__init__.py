"""Flow QA before launch: preview, test send, backtest on recorded traffic, cost estimates.

* :mod:`~smsflow.flowqa.preview` renders every send step of a flow for a sample (or given)
  customer with the engine's own code and asks the compliance gate what it would do;
* :mod:`~smsflow.flowqa.testsend` sends one step to a real phone as a test;
* :mod:`~smsflow.flowqa.backtest` runs the real agents (flow engine, gate) offline over
  recorded events on a simulated clock and reports what the flows would have done;
* :mod:`~smsflow.flowqa.pricing` turns segments into an estimated cost per sender type.

Nothing here produces to a live topic except ``test-send``'s one ``test_sent`` outcome.
"""
