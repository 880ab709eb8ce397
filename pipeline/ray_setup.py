"""Starting or joining Ray, in one place.

`ray.address` unset and no `RAY_ADDRESS`: start a local Ray in this process with the CPUs available.
`ray.address=auto` or an address, or `RAY_ADDRESS` set (as inside `ray job submit`): connect, passing no
local-only arguments (Ray refuses `num_cpus` and friends when connecting).
"""
import logging
import os

import ray

log = logging.getLogger(__name__)


def init_ray(ray_cfg) -> None:
    """Start or join Ray unless this process is already connected (tests share one local cluster)."""
    if ray.is_initialized():
        return
    address = ray_cfg.get("address") or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("joining the Ray cluster at %s", address)
        ray.init(address=address, logging_level=logging.WARNING)
        return
    # A throw-away local cluster needs no token auth; a user's explicit choice is kept.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    num_cpus = ray_cfg.get("num_cpus") or os.cpu_count()
    # address="local": always a new cluster, never one a `ray start` left running on this machine.
    kwargs = dict(address="local", num_cpus=num_cpus, include_dashboard=bool(ray_cfg.get("dashboard", True)),
                  logging_level=logging.WARNING)
    if ray_cfg.get("object_store_memory"):
        kwargs["object_store_memory"] = int(ray_cfg.object_store_memory)
    log.info("starting a local Ray with %s CPUs", num_cpus)
    ray.init(**kwargs)
