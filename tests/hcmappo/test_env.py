"""HC-MAPPO-L environment: PettingZoo contracts, masks, constraints, batched = single."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from edgerl.edge.profiler import profile_model
from edgerl.hcmappo import costs
from edgerl.hcmappo.batched import BatchedHcEnv
from edgerl.hcmappo.config import PAPER_MODELS, make_config
from edgerl.hcmappo.env import HcEnv, env, parallel_env
from edgerl.utils.errors import InputError

LEAK = {
    n: 1.0 - np.arange(profile_model(n).num_layers + 1) / profile_model(n).num_layers
    for n in PAPER_MODELS
}
"""Leakage 1 - z / L per model: 1 at z = 0, 0 at z = L (the paper's conventions)."""

SMALL = dict(n_servers=3, n_users=6, episode_slots=8, deploy_interval_slots=3)


def make(**kw) -> HcEnv:
    return parallel_env(leakage=LEAK, **{**SMALL, **kw})


def feasible_deployment(core: BatchedHcEnv, b: int, j: int, rng: np.random.Generator) -> np.ndarray:
    """A random deployment of server j in copy b that fits its storage."""
    x = np.zeros(core.n_services, dtype=np.int8)
    free = core.server_storage_bytes[b, j]
    for i in rng.permutation(core.n_services):
        if rng.random() < 0.6 and core.service_bytes[i] <= free:
            x[i] = 1
            free -= core.service_bytes[i]
    return x


def random_actions(e: HcEnv, obs: dict, rng: np.random.Generator) -> dict:
    """Valid random actions for the acting agents."""
    acts = {}
    if e.phase == "deploy":
        for j, a in enumerate(e.agents_of("deploy")):
            acts[a] = feasible_deployment(e.core, 0, j, rng)
    elif e.phase == "user":
        for a in e.agents_of("user"):
            smask, zmask = obs[a]["action_mask"]
            acts[a] = np.array(
                [rng.choice(np.flatnonzero(smask)), rng.choice(np.flatnonzero(zmask))]
            )
    else:
        for a in e.agents_of("alloc"):
            acts[a] = rng.random((2, e.core.n_users)).astype(np.float32)
    return acts


def _valid_user_actions(e: HcEnv, obs: dict) -> dict:
    return {a: np.array([0, 0]) for a in e.agents_of("user")}


# --------------------------------------------------------------------------- PettingZoo contracts


def test_parallel_api_test_raise_mode() -> None:
    # With storage for every service, every MultiBinary sample fits (C7), and users sample
    # within their masks: the checker's actions are all valid, so nothing is repaired.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(make(server_storage_gb=(10.0, 12.0)), num_cycles=60)


def test_parallel_api_test_repair_mode() -> None:
    # The checker samples deployments without regard to storage, which no per-element mask
    # can express; with invalid_action='repair' they are cut to fit.
    parallel_api_test(make(invalid_action="repair"), num_cycles=60)


def test_parallel_seed_test() -> None:
    # The seed test samples every action without masks: repair mode on the paper's catalog ...
    parallel_seed_test(lambda: make(invalid_action="repair"), num_cycles=40)
    # ... and raise mode on a catalog whose models all have L = 18 (every split valid) with
    # storage for every service.
    leak = {m: LEAK[m] for m in ("resnet34", "resnet50")}
    parallel_seed_test(
        lambda: parallel_env(
            leakage=leak, models=("resnet34", "resnet50"), server_storage_gb=(2.0, 2.5), **SMALL
        ),
        num_cycles=40,
    )


def test_aec_factory_runs() -> None:
    aec = env(leakage=LEAK, **SMALL)
    aec.reset(seed=3)
    assert aec.agent_selection == "deploy_0"
    assert set(aec.possible_agents) == {
        *(f"deploy_{j}" for j in range(3)),
        *(f"user_{k}" for k in range(6)),
        *(f"alloc_{j}" for j in range(3)),
    }


# --------------------------------------------------------------------------- spaces and layouts


def test_spaces_and_layouts_default_size() -> None:
    e = parallel_env(leakage=LEAK)
    obs, infos = e.reset(seed=0)
    # I = 45, M = 9, Z = 20, J = 10, K = 50
    assert e.observation_space("deploy_0")["observation"].shape == (4 * 45 + 3,)
    assert e.observation_space("user_0")["observation"].shape == (45 + 9 + 6 + 4 * 10 + 450 + 2,)
    assert e.observation_space("alloc_0")["observation"].shape == (6 + 50 * (9 + 9),)
    assert e.action_space("user_0").nvec.tolist() == [10, 20]
    assert e.action_space("deploy_0").n == 45
    assert e.action_space("alloc_0").shape == (2, 50)
    assert e.state().shape == e.state_space.shape == (2379,)
    for agent in e.agents:
        assert e.observation_space(agent).contains(obs[agent]), agent
    assert e.state_space.contains(e.state())
    for kind, lay in e.layouts.items():
        stops = sorted((s.start, s.stop) for s in lay.values())
        assert stops[0][0] == 0 and all(a[1] == b[0] for a, b in zip(stops, stops[1:])), kind


def test_user_observation_content() -> None:
    e = make()
    obs, _ = e.reset(seed=1)
    e.step({a: np.ones(45, np.int8) * 0 for a in e.agents_of("deploy")})  # cache nothing
    core = e.core
    lay = e.layouts["user"]
    o = e._observations(core.observe("all"))
    for k, a in enumerate(e.agents_of("user")):
        v = o[a]["observation"]
        i = core.req_service[0, k]
        assert v[lay["service_onehot"]].argmax() == i and v[lay["service_onehot"]].sum() == 1
        assert v[lay["model_onehot"]].argmax() == i // 5
        assert v[lay["acting"]][0] == 1.0
        assert not v[lay["cached"]].any() and not v[lay["deployment"]].any()


def test_phases_rewards_and_acting_flags() -> None:
    e = make()
    obs, _ = e.reset(seed=2)
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(200):
        phase = e.phase
        t = e.core.t
        for a in e.agents:
            kind = a.split("_")[0]
            flag = obs[a]["observation"][e.layouts[kind]["acting"]][0]
            assert flag == float(kind == phase), (a, phase)
        obs, rew, term, trunc, info = e.step(random_actions(e, obs, rng))
        seen.append((t, phase))
        deploy_rew = [rew[a] for a in e.possible_agents if a.startswith("deploy")]
        if phase != "alloc":
            assert all(r == 0.0 for r in rew.values())
        else:
            assert all(rew[f"user_{k}"] < 0 for k in range(6))
            interval_end = (t + 1) % 3 == 0 or t + 1 == 8
            assert any(r != 0.0 for r in deploy_rew) == interval_end
            assert info["deploy_0"]["interval_end"] == interval_end
        assert not any(term.values())
        if any(trunc.values()):
            assert all(trunc.values()) and e.agents == [] and t == 7
            assert "episode" in info["user_0"]
            break
    # deployment phases exactly in slots 0, 3, 6
    assert [t for t, p in seen if p == "deploy"] == [0, 3, 6]
    assert [p for t, p in seen if t == 1] == ["user", "alloc"]
    with pytest.raises(InputError, match="reset"):
        e.step({})


# --------------------------------------------------------------------------- masks


def _to_user_phase(e: HcEnv, seed: int, deploy_all: bool = True) -> dict:
    obs, _ = e.reset(seed=seed)
    rng = np.random.default_rng(seed)
    acts = {a: feasible_deployment(e.core, 0, j, rng) for j, a in enumerate(e.agents_of("deploy"))}
    obs, *_ = e.step(acts)
    assert e.phase == "user"
    return obs


def test_every_masked_valid_user_action_is_accepted_and_invalid_raises() -> None:
    # Small device memory (5-10 MB) makes the deep splits of VGG and ResNet invalid too.
    e = make(user_memory_gb=(0.005, 0.01))
    obs = _to_user_phase(e, seed=4)
    base = {a: np.array([0, 0]) for a in e.agents_of("user")}
    n_valid = n_invalid = 0
    for k in range(2):
        agent = f"user_{k}"
        smask, zmask = obs[agent]["action_mask"]
        for s in range(e.core.n_servers):
            for z in range(e.core.n_splits):
                acts = {**base, agent: np.array([s, z])}
                if smask[s] and zmask[z]:
                    trial = copy.deepcopy(e)
                    trial.step(acts)
                    assert trial.phase == "alloc" and trial.core.split[0, k] == z
                    n_valid += 1
                else:
                    with pytest.raises(InputError, match=rf"{agent}: split {z} .*valid splits"):
                        e.step(acts)
                    assert e.phase == "user"  # a refused action changes nothing
                    n_invalid += 1
    assert n_valid > 0 and n_invalid > 0
    # out of the space: server J, negative split, non-integer split
    for bad, pattern in (([3, 0], "server 3"), ([0, -1], "split -1"), ([0, 1.5], "split 1.5")):
        with pytest.raises(InputError, match=rf"user_2: {pattern}"):
            e.step({**base, "user_2": np.array(bad)})


def test_split_mask_brute_force() -> None:
    e = make(user_memory_gb=(0.005, 0.5), n_users=20)
    cat = e.core.catalog
    rng = np.random.default_rng(1)
    obs = _to_user_phase(e, seed=5)
    checked = set()
    for _ in range(6):
        for k, a in enumerate(e.agents_of("user")):
            i = int(e.core.req_service[0, k])
            m = i // cat.services_per_model
            mem = e.core.user_memory_bytes[0, k]
            want = [
                z <= cat.num_layers[m] and cat.device_param_bytes[m, z] <= mem
                for z in range(cat.n_splits)
            ]
            np.testing.assert_array_equal(obs[a]["action_mask"][1], want)
            assert obs[a]["action_mask"][0].all()  # every server may be chosen
            checked.add(m)
        while True:  # next user phase
            obs, *_ = e.step(random_actions(e, obs, rng))
            if e.phase == "user" or not e.agents:
                break
        if not e.agents:
            break
    assert len(checked) >= 5


def test_mask_uncached_servers_option() -> None:
    e = make(mask_uncached_servers=True)
    obs = _to_user_phase(e, seed=6)
    core = e.core
    for k, a in enumerate(e.agents_of("user")):
        cached = core.deployment[0, :, core.req_service[0, k]]
        want = cached if cached.any() else np.ones_like(cached)
        np.testing.assert_array_equal(obs[a]["action_mask"][0], want)
    # a user whose service some server lacks: choosing that server is refused
    k = next(k for k in range(6) if not core.deployment[0, :, core.req_service[0, k]].all())
    s = int(np.flatnonzero(~obs[f"user_{k}"]["action_mask"][0].astype(bool))[0])
    acts = {
        a: np.array([int(np.flatnonzero(obs[a]["action_mask"][0])[0]), 0])
        for a in e.agents_of("user")
    }
    acts[f"user_{k}"] = np.array([s, 0])
    with pytest.raises(InputError, match=rf"user_{k}: server {s} .*valid servers"):
        e.step(acts)


# --------------------------------------------------------------------------- storage and allocation


def test_deployment_over_storage_raises_and_fitting_one_is_accepted() -> None:
    e = make()
    e.reset(seed=7)
    core = e.core
    acts = {a: np.zeros(45, np.int8) for a in e.agents_of("deploy")}
    # all services of server 1: ~9.5 GB > its 3-5 GB
    acts["deploy_1"] = np.ones(45, np.int8)
    with pytest.raises(InputError, match=r"deploy_1: .*GB.*\(C7\)"):
        e.step(acts)
    assert e.phase == "deploy"
    # fill server 1 up exactly to what fits in index order, accepted
    free = core.server_storage_bytes[0, 1]
    x = np.zeros(45, np.int8)
    for i in range(45):
        if core.service_bytes[i] <= free:
            x[i] = 1
            free -= core.service_bytes[i]
    acts["deploy_1"] = x
    e.step(acts)
    np.testing.assert_array_equal(core.deployment[0, 1], x.astype(bool))
    assert (core.service_bytes * core.deployment[0, 1]).sum() <= core.server_storage_bytes[0, 1]


def test_repair_mode_keeps_storage_and_reports() -> None:
    e = make(invalid_action="repair")
    e.reset(seed=8)
    acts = {a: np.ones(45, np.int8) for a in e.agents_of("deploy")}
    _, _, _, _, info = e.step(acts)
    core = e.core
    used = (core.deployment[0] * core.service_bytes).sum(-1)
    assert np.all(used <= core.server_storage_bytes[0])
    assert all(info[a]["repaired"] for a in e.agents_of("deploy"))


def test_bad_allocation_and_missing_actions_raise() -> None:
    e = make()
    obs = _to_user_phase(e, seed=9)
    with pytest.raises(InputError, match="no action for"):
        e.step({"user_0": np.array([0, 0])})
    with pytest.raises(InputError, match="unknown agents"):
        e.step({**_valid_user_actions(e, obs), "user_99": np.array([0, 0])})
    e.step(_valid_user_actions(e, obs))
    good = {a: np.full((2, 6), 0.5, np.float32) for a in e.agents_of("alloc")}
    bad = dict(good)
    bad["alloc_2"] = good["alloc_2"].copy()
    bad["alloc_2"][1, 3] = -0.1
    with pytest.raises(InputError, match=r"alloc_2: bandwidth weights .*\[0, 1\]"):
        e.step(bad)
    bad["alloc_2"] = np.ones((2, 5))
    with pytest.raises(InputError, match=r"alloc_2: .*shape"):
        e.step(bad)
    e.step(good)
    assert e.phase == "user"


# --------------------------------------------------------------------------- slot evaluation


def test_cache_miss_fails() -> None:
    e = make()
    e.reset(seed=10)
    e.step({a: np.zeros(45, np.int8) for a in e.agents_of("deploy")})  # nothing cached
    e.step({a: np.array([0, 0]) for a in e.agents_of("user")})
    _, rew, _, _, info = e.step({a: np.ones((2, 6), np.float32) for a in e.agents_of("alloc")})
    cfg = e.config
    for k in range(6):
        d = info[f"user_{k}"]
        assert not d["success"] and not d["cache_hit"]
        assert d["delay_s"] == d["cost"] == cfg.fail_delay_s
        assert rew[f"user_{k}"] == cfg.fail_reward
        assert d["energy_j"] == 0.0 and d["privacy_cost"] == 0.0
    # server 0 holds all six users: alloc_0 reward = -mean delay = -tau_fail
    assert rew["alloc_0"] == -cfg.fail_delay_s and info["alloc_0"]["n_users"] == 6
    assert rew["alloc_1"] == 0.0 and info["alloc_1"]["cost"] == 0.0


def test_slot_delay_matches_hand_recomputation() -> None:
    # One server, three users on it, lenet and vgg services cached; weights 1:2:1 (0.25, 0.5, 0.25).
    e = make(n_servers=1, n_users=3, shadowing_std_db=0.0, server_storage_gb=(10.0, 12.0))
    e.reset(seed=11)
    e.step({"deploy_0": np.ones(45, np.int8)})
    core = e.core
    svc = core.req_service[0].copy()
    batches = core.req_batch[0].copy()  # the next slot's requests are drawn at the slot's end
    splits = np.array([0, min(2, core.service_layers[svc[1]]), core.service_layers[svc[2]]])
    e.step({f"user_{k}": np.array([0, splits[k]]) for k in range(3)})
    w = np.array([0.25, 0.5, 0.25], np.float32)
    _, rew, _, _, info = e.step({"alloc_0": np.stack([w, w])})
    cat = core.catalog
    w = w.astype(np.float64)
    n0f = 10 ** ((-174 + 6) / 10) / 1000  # W/Hz
    uses_compute = splits < core.service_layers[svc]
    for k in range(3):
        m, z, batch = svc[k] // 5, splits[k], batches[k]
        d = np.hypot(*(core.server_pos_m[0] - core.user_pos_m[0, k]))
        g = 10 ** (-(30 + 35 * np.log10(max(d, 1.0))) / 10)
        bw = w[k] / w.sum() * core.server_bandwidth_hz[0, 0]
        r_down = bw * np.log2(1 + core.server_tx_w[0, 0] * g / (n0f * bw))
        r_up = bw * np.log2(1 + core.user_tx_w[0, k] * g / (n0f * bw))
        phi = w[k] / w[uses_compute].sum() if uses_compute[k] else 0.0
        edge = (
            batch * cat.edge_flops[m, z] / (phi * core.server_flops[0, 0])
            if cat.edge_flops[m, z]
            else 0.0
        )
        up_s = batch * cat.upload_bytes[m, z] * 8 / r_up
        want = (
            cat.device_param_bytes[m, z] * 8 / r_down
            + batch * cat.device_flops[m, z] / core.user_flops[0, k]
            + up_s
            + edge
        )
        got = info[f"user_{k}"]
        if np.isfinite(want):  # eq. (5): served (the cache holds it), however slow
            assert got["success"]
            assert got["delay_s"] == pytest.approx(want, rel=1e-9)
            energy = (
                core.user_energy_per_flop[0, k] * batch * cat.device_flops[m, z]
                + core.user_tx_w[0, k] * up_s
            )
            assert got["energy_j"] == pytest.approx(energy, rel=1e-9)
            priv = (
                (0.31 + 1.88 * core.user_preference[0, k])
                * cat.leakage[m, z]
                * batch
                * cat.input_bytes[m]
                / 1e5
            )
            assert got["privacy_cost"] == pytest.approx(priv, rel=1e-9)
        else:
            assert not got["success"] and got["delay_s"] == e.config.fail_delay_s


def test_constraints_and_reward_consistency_on_random_rollout() -> None:
    e = make(n_users=12, invalid_action="repair")
    obs, _ = e.reset(seed=12)
    core = e.core
    cfg = e.config
    rng = np.random.default_rng(2)
    n_slots = 0
    while e.agents:
        phase = e.phase
        acts = random_actions(e, obs, rng)
        if phase == "alloc":  # some zero weights, so that some users get nothing
            acts = {a: v * (rng.random(v.shape) < 0.7) for a, v in acts.items()}
        obs, rew, _, _, info = e.step(acts)
        used = (core.deployment[0] * core.service_bytes).sum(-1)
        assert np.all(used <= core.server_storage_bytes[0])  # (C7)
        if phase != "alloc":
            continue
        n_slots += 1
        srv = np.array([info[f"user_{k}"]["server"] for k in range(12)])
        assert np.all((srv >= 0) & (srv < 3))  # (C2), (C4): exactly one server each
        for share in ("compute_share", "bandwidth_share"):
            s = np.array([info[f"user_{k}"][share] for k in range(12)])
            per_server = np.bincount(srv, weights=s, minlength=3)
            assert np.all(per_server <= 1.0 + 1e-9)  # (C5), (C6)
        delays = np.array([info[f"user_{k}"]["delay_s"] for k in range(12)])
        for k in range(12):
            d = info[f"user_{k}"]
            assert d["cost"] == d["delay_s"]
            assert d["success"] or d["delay_s"] == cfg.fail_delay_s
            assert not d["success"] or d["cache_hit"]
            want = costs.user_reward(
                d["privacy_cost"],
                d["energy_j"],
                d["delay_s"],
                d["success"],
                cfg.delay_limit_s,
                cfg.weight_privacy,
                cfg.weight_energy,
                cfg.weight_delay_violation_per_s,
                cfg.fail_reward,
            )
            assert rew[f"user_{k}"] == pytest.approx(float(want))
            assert d["user_cost"] == pytest.approx(-float(want))
        for j in range(3):
            mine = delays[srv == j]
            mean = mine.mean() if mine.size else 0.0
            assert info[f"alloc_{j}"]["cost"] == pytest.approx(mean)
            assert rew[f"alloc_{j}"] == pytest.approx(-mean)
    assert n_slots == 8


def test_zipf_request_frequencies() -> None:
    core = BatchedHcEnv(4, leakage=LEAK, n_servers=2, n_users=100, shuffle_popularity=False)
    core.reset(seed=0)
    counts = np.zeros(45)
    for _ in range(60):
        counts += np.bincount(core.req_service.reshape(-1), minlength=45)
        core._draw_slot()
    freq = counts / counts.sum()
    ranks = np.arange(1, 46)
    p = ranks**-0.8 / (ranks**-0.8).sum()
    # 24 000 draws: a frequency's standard error is at most sqrt(0.25 / 24000) ~ 0.0032
    np.testing.assert_allclose(freq, p, atol=0.012)
    assert freq[0] > freq[10] > freq[44]


# --------------------------------------------------------------------------- seeding and batching


def test_seeding() -> None:
    a, b = make(), make()
    oa, _ = a.reset(seed=21)
    ob, _ = b.reset(seed=21)
    np.testing.assert_array_equal(a.state(), b.state())
    b.reset(seed=22)
    assert not np.array_equal(a.state(), b.state())
    # reset without a seed continues the generator: a new, different episode
    s0 = a.state()
    a.reset()
    assert not np.array_equal(s0, a.state())


def _compare(single: HcEnv, venv: BatchedHcEnv, b: int) -> None:
    s_obs = single.core.observe("all")
    v_obs = venv.observe("all")
    for key, val in s_obs.items():
        np.testing.assert_array_equal(val[0], v_obs[key][b], err_msg=key)
    np.testing.assert_array_equal(single.state(), venv.state()[b])


def test_batched_equals_single_envs() -> None:
    seeds = [5, 9, 13]
    venv = BatchedHcEnv(3, leakage=LEAK, **SMALL)
    singles = [make() for _ in seeds]
    venv.reset(seed=seeds)
    s_obs = [e.reset(seed=s)[0] for e, s in zip(singles, seeds)]
    for i, e in enumerate(singles):
        _compare(e, venv, i)
    rng = np.random.default_rng(3)
    steps = 0
    while steps < 34:  # 8 slots + 3 deployments per episode: crosses the autoreset
        phase = venv.phase
        acts = [random_actions(e, o, rng) for e, o in zip(singles, s_obs)]
        names = singles[0].agents_of(phase)
        arr = np.stack([np.stack([a[n] for n in names]) for a in acts])
        if phase == "deploy":
            res = venv.step_deploy(arr)
        elif phase == "user":
            res = venv.step_user(arr[..., 0], arr[..., 1])
        else:
            res = venv.step_alloc(arr[:, :, 0], arr[:, :, 1])
        for i, e in enumerate(singles):
            o, rew, _, trunc, info = e.step(acts[i])
            for kind in ("deploy", "user", "alloc"):
                for n, agent in enumerate(e.agents_of(kind)):
                    assert rew[agent] == res.rewards[kind][i, n]
                    assert info[agent]["cost"] == res.costs[kind][i, n]
            assert all(trunc.values()) == bool(res.truncated[i])
            if res.truncated[i]:
                for key, val in res.info["final_obs"].items():
                    np.testing.assert_array_equal(e.core.observe("all")[key][0], val[i])
                for key, val in info["user_0"]["episode"].items():
                    assert val == res.info["episode_stats"][key][i]
                o, _ = e.reset()  # continues its generator, as the batch's autoreset
            s_obs[i] = o
            _compare(e, venv, i)
        steps += 1
    # 19 steps per episode (8 slots x 2 phases + 3 deployments); 15 more reach slot 6
    assert venv.t == 6 and venv.phase == "user"


def test_batched_step_dispatch_and_phase_errors() -> None:
    venv = BatchedHcEnv(2, leakage=LEAK, **SMALL)
    with pytest.raises(InputError, match="reset"):
        venv.observe()
    venv.reset(seed=0)
    with pytest.raises(InputError, match="deploy"):
        venv.step_user(np.zeros((2, 6)), np.zeros((2, 6)))
    res = venv.step(np.zeros((2, 3, 45), bool))
    assert venv.phase == "user" and set(res.obs) == {
        "user_obs",
        "user_server_mask",
        "user_split_mask",
    }
    assert res.obs["user_obs"].shape == (2, 6, venv.obs_dims["user"])
    res = venv.step(np.zeros((2, 6, 2), np.int64))
    assert set(res.obs) == {"alloc_obs", "alloc_user_mask"}
    assert res.obs["alloc_obs"].shape == (2, 3, venv.obs_dims["alloc"])
    with pytest.raises(InputError, match="copy 0, user_3"):
        venv_u = BatchedHcEnv(2, leakage=LEAK, **SMALL)
        venv_u.reset(seed=0)
        venv_u.step_deploy(np.zeros((2, 3, 45), bool))
        z = np.zeros((2, 6), np.int64)
        z[0, 3] = 25
        venv_u.step_user(np.zeros((2, 6), np.int64), z)


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_users", 0),
        ("n_servers", 0),
        ("zipf_s", 0.0),
        ("zipf_s", -1.0),
        ("server_storage_gb", (5.0, 3.0)),
        ("user_compute_gflops", (-10.0, 100.0)),
        ("server_tx_power_dbm", (float("nan"), 43.0)),
        ("user_tx_power_dbm", (float("-inf"), 30.0)),
        ("privacy_preference", (0.2, 1.3)),
        ("privacy_preference", (-0.1, 0.5)),
        ("input_batch", (0, 4)),
        ("fail_reward", 10.0),
        ("shadowing_std_db", -1.0),
        ("invalid_action", "ignore"),
    ],
)
def test_config_refuses_bad_values_naming_the_field(field: str, value) -> None:
    with pytest.raises(InputError, match=field):
        make_config(**{field: value})


def test_env_refuses_storage_below_every_model() -> None:
    with pytest.raises(InputError, match="server_storage_gb"):
        make(server_storage_gb=(0.0001, 0.0002))


def test_cache_misses_split_by_cause() -> None:
    venv = BatchedHcEnv(1, make_config(**SMALL), leakage=LEAK)
    venv.reset(seed=10)
    # Requests fixed by hand: users 0-5 ask for services 0, 1, 2, 3, 4, 4 (all LeNet-7).
    venv.req_service = np.array([[0, 1, 2, 3, 4, 4]])
    x = np.zeros((1, 3, venv.n_services), dtype=np.int8)
    x[0, 0, [0, 1, 2]] = 1  # server 0 holds services 0, 1, 2
    x[0, 1, 3] = 1  # server 1 holds service 3; server 2 holds nothing
    venv.step_deploy(x)
    # user 0 -> server 0: hit; user 1 -> server 1 and user 2 -> server 2: misses although
    # server 0 holds their services (avoidable); user 3 -> server 1: hit; users 4, 5 ask for
    # service 4, which no server holds (no cache).
    server = np.array([[0, 1, 2, 1, 0, 1]])
    split = venv.split_mask().argmax(-1)
    venv.step_user(server, split)
    res = venv.step_alloc(np.ones((1, 3, 6), np.float32), np.ones((1, 3, 6), np.float32))
    np.testing.assert_array_equal(res.info["cache_hit"], [[1, 0, 0, 1, 0, 0]])
    np.testing.assert_array_equal(res.info["miss_avoidable"], [[0, 1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(res.info["miss_no_cache"], [[0, 0, 0, 0, 1, 1]])
    stats = venv.episode_stats()
    # 6 requests: 2 hits, 2 avoidable misses, 2 with no cache anywhere -> 1/3 each.
    assert stats["cache_hit_rate"][0] == pytest.approx(1 / 3)
    assert stats["miss_avoidable_rate"][0] == pytest.approx(1 / 3)
    assert stats["miss_no_cache_rate"][0] == pytest.approx(1 / 3)


def test_cache_miss_causes_partition_the_requests_brute_force() -> None:
    venv = BatchedHcEnv(3, make_config(**SMALL), leakage=LEAK)
    venv.reset(seed=4)
    rng = np.random.default_rng(5)
    checked = 0
    while True:
        if venv.phase == "deploy":
            x = np.stack(
                [
                    np.stack([feasible_deployment(venv, b, j, rng) for j in range(3)])
                    for b in range(3)
                ]
            )
            venv.step_deploy(x)
        svc = venv.req_service.copy()
        dep = venv.deployment.copy()
        server = rng.integers(0, 3, size=(3, 6))
        split = venv.split_mask().argmax(-1)
        venv.step_user(server, split)
        res = venv.step_alloc(np.ones((3, 3, 6), np.float32), np.ones((3, 3, 6), np.float32))
        for b in range(3):
            for k in range(6):
                anywhere = any(dep[b, j, svc[b, k]] for j in range(3))
                hit = bool(dep[b, server[b, k], svc[b, k]])
                assert res.info["cache_hit"][b, k] == hit
                assert res.info["miss_avoidable"][b, k] == (not hit and anywhere)
                assert res.info["miss_no_cache"][b, k] == (not anywhere)
                checked += 1
        if res.truncated.all():
            stats = res.info["episode_stats"]
            break
    assert checked == 3 * 6 * 8
    total = stats["cache_hit_rate"] + stats["miss_avoidable_rate"] + stats["miss_no_cache_rate"]
    np.testing.assert_allclose(total, 1.0)
    assert (stats["miss_avoidable_rate"] > 0).any()
