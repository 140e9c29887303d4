from smsflow.core.flows import holdout


def test_fraction_within_tolerance_over_20000_ids():
    ids = [f"c_{i}" for i in range(20_000)]
    control = sum(holdout.assign("abandoned_checkout", c, 0.1) == "control" for c in ids)
    assert abs(control / len(ids) - 0.1) < 0.01  # ~4.7 standard deviations


def test_assignment_is_stable_and_per_flow():
    first = [holdout.assign("flow_a", f"c_{i}", 0.5) for i in range(200)]
    again = [holdout.assign("flow_a", f"c_{i}", 0.5) for i in range(200)]
    other = [holdout.assign("flow_b", f"c_{i}", 0.5) for i in range(200)]
    assert first == again
    assert first != other  # independent per flow


def test_edges():
    assert holdout.assign("f", "c", 0.0) == "treatment"
    assert all(0.0 <= holdout.bucket("f", str(i)) < 1.0 for i in range(1000))


def test_pick_weighted():
    assert holdout.pick_weighted(0.0, [1, 3]) == 0
    assert holdout.pick_weighted(0.249, [1, 3]) == 0
    assert holdout.pick_weighted(0.25, [1, 3]) == 1
    assert holdout.pick_weighted(0.999999, [1, 3]) == 1
