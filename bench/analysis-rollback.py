#!/usr/bin/env python3
"""Benchmark of automated rollback (issue: analysis): time from the failing measurement to
0% canary traffic.

A canary Rollout (setWeight 50, then an analysis step with the built-in success-rate
metric: interval 1s, window 2s, failureLimit 0) behind the ingress; four keep-alive
clients send requests back to back and record when each was sent and which version
answered. For each of N releases of a `bad-` version (half its answers are 500s):

  t_fail   when the AnalysisRun's Failed measurement is stored, as seen on a watch of
           AnalysisRuns (the watch adds ~1 ms, so t_fail is late by that much at most);
  t_clear  when the last request that the canary answered was sent.

rollback = t_clear - t_fail: after that instant no request reached the canary. Between
releases the template goes back to the stable one (an immediate rollback, Argo's
behaviour), so every release starts from all-stable.

The anchor is Flagger's documented behaviour, not a run: it rolls back after `threshold`
failed checks taken `interval` apart, so its time from the first failing check to
rollback is (threshold - 1) x interval (plus its reconcile); defaults in its docs:
interval 1m, threshold 5.

Traffic only to 127.0.0.1; bounded by --releases and a deadline per release.
Usage: bench/analysis-rollback.py [--binary target/release/switchyard] [--releases 20]
"""

import argparse
import http.client
import json
import multiprocessing
import os
import queue
import ssl
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rollout as common  # noqa: E402  (the Rollout benchmark's server and manifests)

RUNS = "/apis/switchyard.dev/v1alpha1/namespaces/default/analysisruns"
HOST = "ab.local"


class Probe(threading.Thread):
    """A keep-alive client recording (sent, answered-by-canary) of every request."""

    def __init__(self, address, stop):
        super().__init__(daemon=True)
        self.address, self.stop, self.seen, self.failures = address, stop, [], 0

    def run(self):
        host, port = self.address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                conn.request("GET", "/", headers={"Host": HOST})
                response = conn.getresponse()
                body = response.read()
            except Exception:
                self.failures += 1
                conn = http.client.HTTPConnection(host, int(port), timeout=5)
                continue
            if response.status == 200:
                canary = json.loads(body)["version"] != "blue"
            elif response.status == 500:
                canary = True  # only the bad version answers 500
            else:
                self.failures += 1
                continue
            self.seen.append((sent, canary))


def watch_failed_runs(api, token, ca, found):
    """Watches AnalysisRuns; puts (run, time) when a run's first Failed measurement
    appears. Runs in its own process, so that the probes' threads cannot delay it (the
    monotonic clock is the same in every process)."""
    host, port = api.rsplit(":", 1)
    tls = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(host, int(port), timeout=600, context=tls)
    conn.request("GET", f"{RUNS}?watch=true", headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    reported = set()
    while True:
        line = response.readline()
        if not line:
            return
        seen = time.monotonic()
        run = json.loads(line).get("object", {})
        name = run.get("metadata", {}).get("name")
        for result in run.get("status", {}).get("metricResults", []) or []:
            if name not in reported and any(
                    m.get("phase") == "Failed" for m in result.get("measurements", []) or []):
                reported.add(name)
                found.put((name, seen))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/switchyard")
    parser.add_argument("--releases", type=int, default=20)
    args = parser.parse_args()
    server = common.Server(args.binary)
    stop = threading.Event()
    try:
        template = {
            "apiVersion": "switchyard.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "success-rate"},
            "spec": {"metrics": [{
                "name": "success-rate", "interval": "1s", "count": 10, "failureLimit": 0,
                "successCondition": "result >= 0.95",
                "provider": {"switchyard": {"metric": "success-rate", "target": "canary", "window": "2s",
                                            "minRequests": 20}}}]}}
        strategy = {"canary": {
            "canaryService": "ab-canary", "stableService": "ab-stable",
            "trafficRouting": {"nginx": {"stableIngress": "ab"}},
            "steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "success-rate"}]}},
                      {"setWeight": 100}]}}
        server.apply([template, common.rollout("ab", strategy), common.service("ab-stable", "ab"),
                      common.service("ab-canary", "ab"), common.ingress("ab", HOST, "ab-stable")])
        server.wait_phase("ab", "Healthy")
        found = multiprocessing.Queue()
        watcher = multiprocessing.Process(target=watch_failed_runs, args=(server.api, server.token, server.ca, found),
                                          daemon=True)
        watcher.start()
        probes = [Probe(server.ingress, stop) for _ in range(4)]
        for p in probes:
            p.start()
        path = "/apis/switchyard.dev/v1alpha1/namespaces/default/rollouts/ab"
        rollbacks, releases = [], 0
        for i in range(args.releases):
            server.patch(path, {"spec": {"template": {"spec": {"containers": [common.container(f"bad-green-{i}")]}}}})
            server.wait_phase("ab", "Degraded")
            try:
                _, t_fail = found.get(timeout=5)
            except queue.Empty:
                raise RuntimeError(f"release {i}: no failed measurement seen") from None
            time.sleep(0.5)  # requests in flight at the abort finish; later ones must be stable
            canary_sends = [sent for p in probes for (sent, canary) in list(p.seen) if canary]
            after = [s for s in canary_sends if s >= t_fail - 5]
            t_clear = max(after) if after else t_fail
            rollbacks.append((t_clear - t_fail) * 1000)
            releases += 1
            # Back to the stable template: an immediate rollback to all-stable.
            server.patch(path, {"spec": {"template": {"spec": {"containers": [common.container("blue")]}}}})
            server.wait_phase("ab", "Healthy")
        stop.set()
        for p in probes:
            p.join(timeout=10)
        failures = sum(p.failures for p in probes)
        requests = sum(len(p.seen) for p in probes)
    finally:
        stop.set()
        server.stop()
        if "watcher" in locals():
            watcher.kill()
    print(json.dumps({
        "releases": releases,
        "rollback_ms_p50": round(statistics.median(rollbacks), 1),
        "rollback_ms_p99": round(common.percentile(rollbacks, 99), 1),
        "rollback_ms_max": round(max(rollbacks), 1),
        "rollback_ms_min": round(min(rollbacks), 1),
        "probe_requests": requests,
        "probe_failures_other_than_the_bad_versions_500s": failures,
        "flagger_anchor_s_defaults": (5 - 1) * 60,
    }, indent=2))


if __name__ == "__main__":
    sys.exit(main())
