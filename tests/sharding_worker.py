"""Sharded searches on 4 simulated CPU devices, run as its own process.

The device count must be set before JAX starts, so `test_sharding.py` runs this file
in a subprocess (the rest of the suite keeps one device). Prints one JSON object.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
)

import json  # noqa: E402

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
from helpers import HB_SPACE, start, train  # noqa: E402
from helpers import SHARDED_SMALL as SMALL  # noqa: E402
from helpers import SHARDED_SPACE as SPACE  # noqa: E402
from helpers import sharded_objective as objective  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

import hyperoptax as hx  # noqa: E402
from hyperoptax import hyperband  # noqa: E402
from hyperoptax.spaces import flatten_space  # noqa: E402


def main():
    out = {"devices": jax.device_count()}
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    key = jax.random.PRNGKey(0)
    state, opt = hx.BayesianSearch.init(SPACE, n_max=12, maximize=False, n_parallel=4, **SMALL)

    plain_state, (plain_p, plain_r) = opt.optimize_scan(state, key, objective, 3)
    shard_state, (shard_p, shard_r) = opt.optimize_scan(state, key, objective, 3, mesh=mesh)
    out["scan_first_params_equal"] = bool(
        all(np.array_equal(plain_p[k][0], shard_p[k][0]) for k in SPACE)
    )
    rel_diff = np.abs(np.asarray(plain_r) - np.asarray(shard_r)) / np.abs(np.asarray(plain_r))
    out["scan_first_results_rel_diff"] = float(np.max(rel_diff[0]))
    out["scan_results_rel_diff"] = float(np.max(rel_diff))
    out["scan_X_diff"] = float(
        np.max(np.abs(np.asarray(plain_state.X) - np.asarray(shard_state.X)))
    )
    out["scan_spec"] = str(shard_r.sharding.spec)
    out["scan_shards"] = sorted({tuple(s.data.shape) for s in shard_r.addressable_shards})
    out["scan_shard_devices"] = len({s.device for s in shard_r.addressable_shards})

    # The host loop, with the cheap random search (the mechanism is the same step).
    r_state, r_opt = hx.RandomSearch.init(SPACE, n_parallel=4)
    _, (_, loop_r) = r_opt.optimize(r_state, key, objective, 3, mesh=mesh)
    _, (_, ref_r) = r_opt.optimize(r_state, key, objective, 3)
    out["loop_results_rel_diff"] = float(
        np.max(np.abs(np.stack(loop_r) - np.stack(ref_r)) / np.abs(np.stack(ref_r)))
    )
    out["loop_spec"] = str(loop_r[0].sharding.spec)

    try:
        hx.BayesianSearch(n_parallel=6, **SMALL).optimize_scan(state, key, objective, 1, mesh=mesh)
    except ValueError as e:
        out["indivisible_error"] = str(e)

    # Seeds over devices: shard the keys, vmap the search; each device runs its seeds.
    keys = jax.random.split(key, 8)
    seed_state, seed_opt = hx.RandomSearch.init(SPACE)
    search = eqx.filter_jit(
        eqx.filter_vmap(lambda k: seed_opt.optimize_scan(seed_state, k, objective, 4)[1][1])
    )
    sharded_keys = jax.device_put(keys, NamedSharding(mesh, PartitionSpec("batch")))
    r_sharded = search(sharded_keys)
    r_plain = search(keys)
    out["seeds_spec"] = str(r_sharded.sharding.spec)
    out["seeds_close"] = bool(np.allclose(r_sharded, r_plain, rtol=1e-5))
    # Successive halving: each rung's population (9, 3, 1 continued trainings) padded to
    # a multiple of 4 and split over the devices.
    hb_state, hb = hx.SuccessiveHalving.init(HB_SPACE, min_budget=1, max_budget=9, maximize=False)
    plain, _ = hb.optimize(hb_state, key, train, init_carry=start)
    sharded, (_, hb_r) = hb.optimize(hb_state, key, train, init_carry=start, mesh=mesh)
    out["hb_same_configurations"] = bool(
        np.array_equal(plain.X, sharded.X)
        and np.array_equal(plain.configuration, sharded.configuration)
    )
    out["hb_results_diff"] = float(np.max(np.abs(np.asarray(plain.y) - np.asarray(sharded.y))))
    out["hb_rung_sizes"] = [len(r) for r in hb_r]
    params = flatten_space(HB_SPACE).unflatten(plain.X[:9])
    keys9 = jax.random.split(key, 9)
    carry = hyperband._init(start, params, keys9, mesh)
    lowered = hyperband._continue.lower(train, params, keys9, np.int32(3), carry, mesh)
    out["hb_partitions"] = lowered.compile().compiled.as_text().count("num_partitions=4")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
