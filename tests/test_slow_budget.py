"""The slow lane's budgets (server.inference.budget), on a clock the test holds."""

import math

import pytest

from server.inference.budget import SlowBudget
from server.inference.usage import TAU_S


def test_the_lane_idles_in_proportion_to_each_jobs_cost() -> None:
    budget = SlowBudget(visitor_share=0.1, lane_budget=0.25)
    assert budget.lane_wait_s(10.0) == 0.0
    budget.charge(owner=1, cost_s=0.2, now=10.0)  # a 0.2 s job: 0.6 s idle, so 0.2 of 0.8 s computing
    assert budget.lane_wait_s(10.0) == pytest.approx(0.6)
    assert budget.lane_wait_s(10.5) == pytest.approx(0.1)
    budget.charge(owner=2, cost_s=0.1, now=10.7)  # whoever asked: the process's lane pays
    assert budget.lane_wait_s(10.7) == pytest.approx(0.3)


def test_a_visitor_over_its_share_waits_until_its_usage_has_decayed_to_it_and_no_one_else_does() -> None:
    budget = SlowBudget(visitor_share=0.1, lane_budget=1.0)
    budget.charge(owner=1, cost_s=0.05, now=0.0)
    assert budget.visitor_wait_s(1, 0.0) == 0.0  # within its share
    budget.charge(owner=1, cost_s=0.35, now=0.0)  # 0.4 s of CPU just now: 4× the share
    wait = budget.visitor_wait_s(1, 0.0)
    assert wait == pytest.approx(TAU_S * math.log(4.0))
    assert budget.visitor_wait_s(1, wait) == pytest.approx(0.0, abs=1e-9)
    assert budget.visitor_wait_s(2, 0.0) == 0.0
