"""Redis: the shared dashboard cache, the model registry, and workers surviving a Redis crash.

Real ``redis-server`` (a throwaway one on its own port, so the test can kill and restart it),
two real workers, one scenario in phases:

1. both workers process; either answers every symbol and alert from the cache (LRU, then
   Redis) without asking the owner; the owner wrote one Redis pipeline per batch at most;
2. a published model record whose hash does not match the artifact is refused; a real
   publication is loaded by both workers without a restart;
3. Redis is killed: processing goes on, reads fall back to the cluster, the degradation is
   counted; Redis comes back empty: the owners rewrite their symbols (on a timer, before any new
   tick) and the cache is whole again.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import shutil
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from typing import Any

import orjson
import pytest
import redis

from app.broker import EmbeddedBroker
from app.model_store import save_bundle
from app.models_cli import run as models_cli_run
from app.settings import Settings
from tests.models.test_ensemble import tiny_bundle

from ._support import RedisServer, Workers, gauge, labelled, make_names, produce_keyed, read_json, wait_assigned
from .test_worker import T0, H, Run, market

pytestmark = pytest.mark.integration
TOKEN = "admin-token-for-the-redis-test"


def poll(fn: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 90.0) -> Any:
    """Call ``fn`` until ``ok(result)``; the last result either way."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def symbol_ticks(w: Any) -> tuple[str, dict[str, int]]:
    status, body = w.get("/symbols")
    if status != 200:
        return "", {}
    return body["source"], {r["symbol"]: r["ticks"] for r in body["symbols"]}


@pytest.fixture(scope="module")
def redis_run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("redis")
    data = market(1.25, [(0, 1 * H)], n_symbols=8)
    cut1, cut2 = T0 + 65 * 60_000, T0 + 70 * 60_000
    phases = [[r for r in data.records if lo <= r["timestamp"] < hi] for lo, hi in
              ((0, cut1), (cut1, cut2), (cut2, 2**62))]
    server = RedisServer(root / "redis").start()
    names = make_names("redis")
    names.create_topics(broker)
    prefix = f"test:{names.app_id}:"
    env = {"CRYPTOTRACE_REDIS_URL": server.url, "CRYPTOTRACE_REDIS_PREFIX": prefix,
           "CRYPTOTRACE_REGISTRY_POLL_S": "0.5", "CRYPTOTRACE_ADMIN_TOKEN": TOKEN}
    ws = Workers(broker, names, root)
    run = Run(names, data, [*ws.logs, ("redis log", server.log_path)], {"phases": phases, "prefix": prefix})
    info = run.info
    client = redis.Redis(port=server.port)
    try:
        a, b = ws.start("worker-a", **env), ws.start("worker-b", **env)
        run.logs[:] = ws.logs + [("redis log", server.log_path)]
        a.wait_ready(), b.wait_ready()
        info["split"] = wait_assigned([a, b], names.ticks)
        produce_keyed(broker, names.ticks, phases[0])
        counts1 = data.counts(phases[0])
        info["symbols1"] = {w.base_url: poll(lambda w=w: symbol_ticks(w), lambda v: v == ("cache", counts1))
                            for w in (a, b)}
        info["alerts_topic1"] = read_json(broker, names.alerts)
        info["alerts_view1"] = {w.base_url: w.get("/alerts?limit=1000") for w in (a, b)}
        info["series1"] = {s: a.get("/dashboard/series/" + urllib.parse.quote(s, safe="")) for s in counts1}
        info["redis_summary1"] = {s: orjson.loads(client.get(prefix + "sym:" + s) or b"null") for s in counts1}
        info["metrics1"] = {w.base_url: w.metrics() for w in (a, b)}

        # --- the registry: a record with the wrong hash is refused, a real publication loads everywhere
        bundle = copy.copy(tiny_bundle())
        path = save_bundle(bundle, a.model_dir)
        shutil.copytree(path, b.model_dir / path.name)  # the "shared volume"
        info["version"] = version = path.name
        client.set(prefix + "model", orjson.dumps({"version": version, "model_sha256": "0" * 64,
                                                   "published_at_ms": 1}))
        info["refused"] = {w.base_url: poll(lambda w=w: labelled(w.metrics(), "cryptotrace_model_loads_total"),
                                            lambda v: v.get('result="refused"', 0) >= 1, 15) for w in (a, b)}
        info["models_after_refusal"] = {w.base_url: w.get("/models")[1]["model_version"] for w in (a, b)}
        settings = Settings(redis_url=server.url, redis_prefix=prefix, model_dir=a.model_dir, app_id=names.app_id)
        out = io.StringIO()
        with redirect_stdout(out):
            info["publish_rc"] = models_cli_run(settings, argparse.Namespace(models_command="publish", version=version))
        info["publish_out"] = json.loads(out.getvalue())
        info["models_after_publish"] = {
            w.base_url: poll(lambda w=w: w.get("/models")[1], lambda m: m and m["model_version"] == version, 30)
            for w in (a, b)}

        # --- the mutating endpoints: a token is required; a threshold set on one worker applies on both
        info["threshold_no_token"] = a.post("/thresholds", {"alert_threshold": 0.99})
        info["threshold_bad_token"] = a.post("/thresholds", {"alert_threshold": 0.99}, token="x" * len(TOKEN))
        info["threshold_bad_body"] = a.post("/thresholds", {"alert_threshold": 1.5}, token=TOKEN)
        info["threshold_get"] = a.get("/thresholds")
        info["threshold_set"] = a.post("/thresholds", {"alert_threshold": 0.99}, token=TOKEN)
        info["models_after_threshold"] = {
            w.base_url: poll(lambda w=w: w.get("/models")[1], lambda m: m and m["alert_threshold"] == 0.99, 30)
            for w in (a, b)}
        info["threshold_reset"] = b.post("/thresholds", {"alert_threshold": None}, token=TOKEN)
        info["models_after_reset"] = {
            w.base_url: poll(lambda w=w: w.get("/models")[1], lambda m: m and m["threshold_override"] is None, 30)
            for w in (a, b)}
        info["reload_unknown"] = a.post("/models/reload", {"version": "m-000000000000"}, token=TOKEN)
        second = copy.copy(tiny_bundle())
        second.threshold = 0.8  # another manifest, so another version
        path2 = save_bundle(second, a.model_dir)
        shutil.copytree(path2, b.model_dir / path2.name)
        info["version2"] = path2.name
        info["reload"] = a.post("/models/reload", {"version": path2.name}, token=TOKEN)
        info["models_after_reload"] = {
            w.base_url: poll(lambda w=w: w.get("/models")[1], lambda m: m and m["model_version"] == path2.name, 30)
            for w in (a, b)}
        info["admin_metrics"] = labelled(a.metrics(), "cryptotrace_admin_requests_total")
        # An override in force when Redis goes down and comes back empty must survive both.
        info["threshold_kept"] = a.post("/thresholds", {"alert_threshold": 0.98}, token=TOKEN)
        poll(lambda: b.get("/models")[1], lambda m: m and m["threshold_override"] == 0.98, 30)

        # --- Redis crashes: processing goes on, reads fall back to the cluster
        server.stop()
        produce_keyed(broker, names.ticks, phases[1])
        counts2 = data.counts(phases[0] + phases[1])
        info["symbols_down"] = {w.base_url: poll(lambda w=w: symbol_ticks(w), lambda v: v == ("cluster", counts2))
                                for w in (a, b)}
        info["metrics_down"] = {w.base_url: w.metrics() for w in (a, b)}
        info["series_down"] = a.get("/dashboard/series/" + urllib.parse.quote(sorted(counts2)[0], safe=""))
        info["admin_down"] = [a.post("/thresholds", {"alert_threshold": 0.5}, token=TOKEN),
                              a.post("/models/reload", {"version": version}, token=TOKEN)]

        # --- Redis comes back empty: the owners rewrite what they own, the cache answers again
        server.start()
        info["up_again"] = [poll(lambda w=w: gauge(w.metrics(), "cryptotrace_redis_up"), lambda v: v == 1.0, 20)
                            for w in (a, b)]
        # No new ticks yet: the owners' timer rewrites what they processed while Redis was down.
        info["symbols_resynced_idle"] = {w.base_url: poll(lambda w=w: symbol_ticks(w),
                                                          lambda v: v == ("cache", counts2)) for w in (a, b)}
        produce_keyed(broker, names.ticks, phases[2])
        info["symbols_back"] = {w.base_url: poll(lambda w=w: symbol_ticks(w), lambda v: v == ("cache", data.counts()))
                                for w in (a, b)}
        info["hist_back"] = {s: client.llen(prefix + "hist:" + s) for s in data.counts()}
        info["models_back"] = {w.base_url: w.get("/models")[1] for w in (a, b)}
        info["logs"] = {w.base_url: w.log_path.read_text(errors="replace") for w in (a, b)}
        yield run
    finally:
        client.close()
        ws.stop_all()
        server.stop()


def test_any_worker_answers_from_the_shared_cache(redis_run: Run) -> None:
    info, data = redis_run.info, redis_run.data
    counts = data.counts(info["phases"][0])
    for source, seen in info["symbols1"].values():
        assert (source, seen) == ("cache", counts)
    for s, summary in info["redis_summary1"].items():
        assert summary and summary["ticks"] == counts[s] and summary["owner"] in info["split"]
    for s, (status, body) in info["series1"].items():
        assert status == 200 and body["source"] == "cache", (s, body)
        assert body["points"] and body["summary"]["ticks"] == counts[s]
    topic_ids = {a["alert_id"] for a in info["alerts_topic1"]}
    assert topic_ids, "no alert in phase 1: the scenario does not test the alert cache"
    for status, body in info["alerts_view1"].values():
        assert status == 200 and {a["alert_id"] for a in body["alerts"]} == topic_ids


def test_cache_hits_are_counted_and_writes_are_batched(redis_run: Run) -> None:
    for url, text in redis_run.info["metrics1"].items():
        lookups = labelled(text, "cryptotrace_cache_lookups_total")
        assert lookups.get('kind="summary",result="redis"', 0) > 0, (url, lookups)  # read others' symbols
        writes = gauge(text, "cryptotrace_redis_writes_total") or 0.0
        batches = gauge(text, "cryptotrace_batches_total") or 0.0
        assert 0 < writes <= batches, (url, writes, batches)  # one pipeline per batch at most
        assert gauge(text, "cryptotrace_redis_up") == 1.0


def test_registry_refuses_a_bad_hash_and_loads_a_publication_everywhere(redis_run: Run) -> None:
    info = redis_run.info
    for refused in info["refused"].values():
        assert refused.get('result="refused"', 0) >= 1, refused
    assert set(info["models_after_refusal"].values()) == {"stat-only"}
    assert info["publish_rc"] == 0 and info["publish_out"]["version"] == info["version"]
    assert len(info["publish_out"]["model_sha256"]) == 64
    for models in info["models_after_publish"].values():
        assert models["model_version"] == info["version"]
        assert models["published"]["version"] == info["version"]


def test_mutating_endpoints_need_the_token_and_apply_cluster_wide(redis_run: Run) -> None:
    info = redis_run.info
    assert info["threshold_no_token"][0] == 401, info["threshold_no_token"]
    assert info["threshold_bad_token"][0] == 401, info["threshold_bad_token"]
    assert info["threshold_bad_body"][0] == 400 and "[0, 1]" in info["threshold_bad_body"][1]["error"]
    assert info["threshold_get"][0] == 405
    status, body = info["threshold_set"]
    assert status == 200 and body["scope"] == "cluster" and body["alert_threshold"] == 0.99, body
    for models in info["models_after_threshold"].values():  # set on worker a, applied by b too
        assert (models["alert_threshold"], models["threshold_override"]) == (0.99, 0.99), models
    assert info["threshold_reset"][0] == 200
    model_threshold = info["models_after_publish"][next(iter(info["models_after_publish"]))]["model_threshold"]
    for models in info["models_after_reset"].values():  # back to the model's own threshold
        assert models["threshold_override"] is None and models["alert_threshold"] == model_threshold, models
    assert info["reload_unknown"][0] == 409, info["reload_unknown"]
    status, body = info["reload"]
    assert status == 200 and body["applied"] and body["model_version"] == info["version2"], body
    assert body["published"]["version"] == info["version2"] and len(body["published"]["model_sha256"]) == 64
    for models in info["models_after_reload"].values():  # published through a, loaded by both
        assert models["model_version"] == info["version2"] and models["model_threshold"] == 0.8, models
    counts = info["admin_metrics"]
    assert counts['endpoint="thresholds",outcome="refused"'] == 2, counts
    assert counts['endpoint="thresholds",outcome="failed"'] == 1, counts
    assert counts['endpoint="thresholds",outcome="done"'] == 1, counts  # the reset went to worker b
    assert counts['endpoint="models_reload",outcome="failed"'] == 1, counts
    assert counts['endpoint="models_reload",outcome="done"'] == 1, counts
    assert all(TOKEN not in log for log in info["logs"].values())
    # Redis down: both endpoints answer 503 and change nothing; back empty: the override is kept.
    assert [status for status, _ in info["admin_down"]] == [503, 503], info["admin_down"]
    for models in info["models_back"].values():
        assert models["threshold_override"] == 0.98 and models["alert_threshold"] == 0.98, models
        assert models["model_version"] == info["version2"], models


def test_workers_keep_processing_without_redis_and_recover(redis_run: Run) -> None:
    info, data = redis_run.info, redis_run.data
    counts2 = data.counts(info["phases"][0] + info["phases"][1])
    for source, seen in info["symbols_down"].values():
        assert (source, seen) == ("cluster", counts2)  # every tick of phase 2 processed, read from the owners
    for url, text in info["metrics_down"].items():
        assert gauge(text, "cryptotrace_redis_up") == 0.0, url
        assert sum(labelled(text, "cryptotrace_redis_errors_total").values()) > 0, url
    status, body = info["series_down"]
    assert status == 200 and body["source"] == "owner" and body["points"]
    for log in info["logs"].values():
        assert "degraded" in log and "is back" in log
    assert info["up_again"] == [1.0, 1.0]
    for source, seen in info["symbols_resynced_idle"].values():
        assert (source, seen) == ("cache", counts2)  # rewritten without waiting for the next batch
    for source, seen in info["symbols_back"].values():
        assert (source, seen) == ("cache", data.counts())  # rewritten after Redis came back empty
    assert min(info["hist_back"].values()) > 0, info["hist_back"]
