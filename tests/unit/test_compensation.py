"""Rollback order: traffic is restored first, then everything else newest first."""

from workflows.compensation import Compensation, CompensationStack


def test_traffic_first_then_newest_first() -> None:
    stack = CompensationStack()
    stack.push(Compensation.retire("shop", "canary", "2.0.0"))
    stack.push(Compensation.traffic("shop", {"stable": 100, "canary": 0}))
    stack.push(Compensation.retire("shop", "extra", "2.0.0"))
    order = [(c.kind, c.slot) for c in stack.in_rollback_order()]
    assert order == [("traffic", ""), ("retire", "extra"), ("retire", "canary")]


def test_empty_stack_is_falsy_and_clear_empties_it() -> None:
    stack = CompensationStack()
    assert not stack
    stack.push(Compensation.traffic("shop", {"stable": 100}))
    assert stack and stack.has_traffic()
    stack.clear()
    assert not stack
