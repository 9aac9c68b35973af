"""Controllers: the ask/tell contract, exact resume, and search quality on a toy objective."""
from __future__ import annotations

import json
import math
import random
import statistics

import pytest
import torch

from nas.controllers import CONTROLLERS, build, default_options
from search_space.space import Decision

NAMES = ["random", "evolution", "ppo"]
# Mixed choice types on purpose: controllers must not care what a choice is.
PAIRS = [("op", ["conv", "sepconv", "mbconv6"]), ("kernel", [3, 5]), ("se", [0.0, 0.25]),
         ("fixed", ["only"]), ("layers", [1, 2, 3, 4])]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matmuls run far faster on one thread on a shared 2-core box; restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy_problem(seed: int, sizes=(3, 4, 5) * 4):
    """Decisions with 3-5 choices and a hidden target; reward = fraction of matching decisions."""
    rng = random.Random(1000 + seed)
    decisions = [(f"d{i}", [f"c{j}" for j in range(n)]) for i, n in enumerate(sizes)]
    target = {name: rng.choice(choices) for name, choices in decisions}
    return decisions, lambda s: sum(s[k] == v for k, v in target.items()) / len(target)


def small_options(name: str) -> dict:
    # Small batches/populations make updates and mutations happen within a short test.
    return {"ppo": {"batch_size": 4}, "evolution": {"population_size": 8, "sample_size": 3}}.get(name, {})


# ---- construction and asks ---------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("as_objects", [False, True])
def test_ask_returns_valid_choices(name, as_objects):
    decisions = [Decision(n, tuple(c)) for n, c in PAIRS] if as_objects else PAIRS
    ctl = build(name, decisions, seed=3, **small_options(name))
    seen = {n: set() for n, _ in PAIRS}
    for _ in range(40):
        s = ctl.ask()
        assert list(s) == [n for n, _ in PAIRS]
        for n, choices in PAIRS:
            assert s[n] in choices
            seen[n].add(s[n])
        ctl.tell(s, float(s["kernel"]))
    # 40 draws over at most 4 choices: every choice of every decision shows up early on.
    assert all(len(seen[n]) == len(c) for n, c in PAIRS)
    assert ctl.num_asked == 40 and ctl.num_told == 40 and ctl.outstanding() == []


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_asks(name):
    a, b, c = (build(name, PAIRS, seed=s) for s in (5, 5, 6))
    asks_a, asks_b, asks_c = ([x.ask() for _ in range(20)] for x in (a, b, c))
    assert asks_a == asks_b
    assert asks_a != asks_c


def test_build_errors_name_what_is_allowed():
    with pytest.raises(ValueError, match=r"'nope'.*evolution.*ppo.*random"):
        build("nope", PAIRS)
    with pytest.raises(ValueError, match=r"'popsize'.*population_size.*sample_size"):
        build("evolution", PAIRS, popsize=10)
    with pytest.raises(ValueError, match=r"'lr'"):
        build("random", PAIRS, lr=0.1)
    with pytest.raises(ValueError, match="sample_size"):
        build("evolution", PAIRS, population_size=4, sample_size=5)
    with pytest.raises(ValueError, match="batch_size"):
        build("ppo", PAIRS, batch_size="8")
    with pytest.raises(ValueError, match="twice"):
        build("random", [("a", [1, 2]), ("a", [3])])
    with pytest.raises(ValueError, match="no choices"):
        build("random", [("a", [])])
    with pytest.raises(ValueError, match="repeated"):
        build("random", [("a", [1, 1])])
    assert default_options("ppo")["batch_size"] == 8
    assert set(CONTROLLERS) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_bad_samples_and_rewards_are_rejected(name):
    ctl = build(name, PAIRS)
    s = ctl.ask()
    with pytest.raises(ValueError, match="kernel"):
        ctl.tell({**s, "kernel": 7}, 1.0)
    with pytest.raises(ValueError, match="missing"):
        ctl.tell({k: v for k, v in s.items() if k != "op"}, 1.0)
    with pytest.raises(ValueError, match="unknown"):
        ctl.tell({**s, "extra": 1}, 1.0)
    with pytest.raises(ValueError, match="finite"):
        ctl.tell(s, float("nan"))
    assert ctl.outstanding() == [s]  # failed tells leave the ask outstanding


# ---- parallel evaluation -------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_out_of_order_tells(name):
    decisions, reward = toy_problem(0)
    ctl = build(name, decisions, seed=1, **small_options(name))
    rng = random.Random(0)
    for _ in range(5):
        asks = [ctl.ask() for _ in range(6)]
        assert ctl.outstanding() == asks
        rng.shuffle(asks)
        for i, s in enumerate(asks):
            ctl.tell(s, reward(s))
            assert len(ctl.outstanding()) == len(asks) - i - 1
    assert ctl.num_told == 30
    if name == "ppo":
        assert ctl.num_updates == 30 // 4


def test_ppo_tell_must_match_an_outstanding_ask():
    ctl = build("ppo", [("a", [1, 2, 3]), ("b", ["x", "y"])], batch_size=2)
    s = ctl.ask()
    other = {"a": 1 if s["a"] != 1 else 2, "b": s["b"]}
    with pytest.raises(ValueError, match="not outstanding"):
        ctl.tell(other, 1.0)
    ctl.tell(s, 1.0)
    with pytest.raises(ValueError, match="not outstanding"):
        ctl.tell(s, 1.0)  # already told


def test_identical_samples_outstanding_twice():
    # One decision with one choice: every ask is the same sample.
    ctl = build("ppo", [("a", ["only"])], batch_size=2)
    s1, s2 = ctl.ask(), ctl.ask()
    assert s1 == s2
    ctl.tell(s1, 0.5)
    ctl.tell(s2, 0.7)
    assert ctl.outstanding() == [] and ctl.num_updates == 1
    with pytest.raises(ValueError):
        ctl.tell(s1, 0.1)


@pytest.mark.parametrize("name", ["random", "evolution"])
def test_never_asked_tells_seed_the_search(name):
    decisions, reward = toy_problem(0)
    ctl = build(name, decisions, **small_options(name))
    best = {n: c[0] for n, c in decisions}
    for _ in range(8):
        ctl.tell(best, 1.0)
    assert ctl.num_told == 8
    if name == "evolution":
        # The population is all `best`, so every child is `best` with one decision changed.
        for _ in range(5):
            child = ctl.ask()
            assert sum(child[k] != best[k] for k in best) == 1
    else:
        # Random search ignores rewards: its proposals are those of a controller told nothing.
        fresh = build(name, decisions, **small_options(name))
        assert [ctl.ask() for _ in range(5)] == [fresh.ask() for _ in range(5)]


# ---- evolution specifics -------------------------------------------------------------------
def test_evolution_ages_out_the_oldest_and_mutates_one_decision():
    decisions, reward = toy_problem(2)
    ctl = build("evolution", decisions, seed=4, population_size=10, sample_size=4)
    told = []
    for _ in range(10):  # warm-up: random asks until P results are in
        s = ctl.ask()
        ctl.tell(s, reward(s))
        told.append((s, reward(s)))
    assert ctl.population == told
    for _ in range(30):
        members = [m for m, _ in ctl.population]
        child = ctl.ask()
        # the child may equal another member, but some member (its parent) is one step away
        assert 1 in {sum(child[k] != m[k] for k in child) for m in members}
        ctl.tell(child, reward(child))
        told.append((child, reward(child)))
        assert ctl.population == told[-10:]


def test_evolution_entropy_is_the_populations():
    ctl = build("evolution", [("a", [1, 2]), ("b", [1, 2, 3, 4])], population_size=4, sample_size=2)
    assert ctl.entropy() == pytest.approx(math.log(2) + math.log(4))
    for a, b in [(1, 1), (1, 2), (2, 3), (2, 4)]:
        ctl.tell({"a": a, "b": b}, 0.0)
    assert ctl.entropy() == pytest.approx(math.log(2) + math.log(4))
    for _ in range(4):
        ctl.tell({"a": 1, "b": 1}, 0.0)
    assert ctl.entropy() == 0.0


# ---- ppo specifics -------------------------------------------------------------------------
def test_ppo_leaves_global_rng_alone_and_entropy_does_not_change_asks():
    decisions, reward = toy_problem(1)
    before = torch.get_rng_state()
    a, b = build("ppo", decisions, seed=2), build("ppo", decisions, seed=2)
    uniform = sum(math.log(len(c)) for _, c in decisions)
    assert uniform - 0.3 < a.entropy() <= uniform  # starts close to uniform
    for _ in range(48):
        sa, sb = a.ask(), b.ask()
        a.entropy()  # logging on one of the two must not change what it asks
        assert sa == sb
        a.tell(sa, reward(sa))
        b.tell(sb, reward(sb))
    assert torch.equal(torch.get_rng_state(), before)
    assert a.entropy() < uniform - 1.0  # the policy has started to commit


# ---- exact resume ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("outstanding", [0, 3])
def test_state_dict_round_trip_resumes_exactly(name, outstanding):
    decisions, reward = toy_problem(3)
    options = small_options(name)
    ctl = build(name, decisions, seed=7, **options)
    for _ in range(23):
        s = ctl.ask()
        ctl.tell(s, reward(s))
    waiting = [ctl.ask() for _ in range(outstanding)]
    text = json.dumps(ctl.state_dict())  # must be plain JSON

    def continue_run(c, waiting):
        asks = []
        for s in reversed(waiting):  # finish the outstanding evaluations first, out of order
            c.tell(s, reward(s))
        for _ in range(25):
            s = c.ask()
            asks.append(s)
            c.tell(s, reward(s))
        return asks, c.entropy()

    expected = continue_run(ctl, waiting)
    fresh = build(name, decisions, seed=7, **options)
    fresh.load_state_dict(json.loads(text))
    assert fresh.outstanding() == waiting
    assert continue_run(fresh, fresh.outstanding()) == expected
    assert json.dumps(fresh.state_dict()) == json.dumps(ctl.state_dict())


def test_load_state_dict_checks_it_fits():
    ctl = build("evolution", PAIRS, population_size=8, sample_size=2)
    state = json.loads(json.dumps(ctl.state_dict()))
    with pytest.raises(ValueError, match="controller"):
        build("random", PAIRS).load_state_dict(state)
    with pytest.raises(ValueError, match="decisions"):
        build("evolution", PAIRS[:2], population_size=8, sample_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match="population_size"):
        build("evolution", PAIRS, population_size=9, sample_size=2).load_state_dict(state)


# ---- search quality ----------------------------------------------------------------------------
def _search(name: str, seed: int, budget: int) -> list[float]:
    decisions, reward = toy_problem(seed)
    ctl = build(name, decisions, seed=seed)
    rewards = []
    for _ in range(budget):
        s = ctl.ask()
        rewards.append(reward(s))
        ctl.tell(s, rewards[-1])
    return rewards


def test_evolution_and_ppo_beat_random_on_the_toy_objective():
    budget, seeds = 400, range(3)
    last = {n: statistics.mean(statistics.mean(_search(n, s, budget)[-100:]) for s in seeds) for n in NAMES}
    assert 0.2 < last["random"] < 0.32  # ~ mean of 1/n over 3-5 choices
    assert last["evolution"] > last["random"] + 0.4, last
    assert last["ppo"] > last["random"] + 0.5, last
    assert last["ppo"] > 0.9, last  # with the default options ppo converges to (near) the optimum
