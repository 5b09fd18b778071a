#!/usr/bin/env python3
"""Benchmark of the single-host engine core (issue: engine core).

Measures, against the real `switchyard` binary on a temp data dir and loopback:
  1. server start to API ready (spawn -> first 200 from /healthz), median of N starts;
  2. apply of 1,000 objects in one set (POST /switchyard/v1/apply) and in 1,000 separate
     create calls over one keep-alive connection, as objects/s;
  3. watch latency from write (PATCH) to the watch event arriving, p50/p99;
  4. server RSS with 10,000 stored objects.

Every loop is bounded in count and time; traffic goes only to 127.0.0.1.
Usage: bench/engine-core.py [--binary target/release/switchyard] [--starts 20]
"""

import argparse
import http.client
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time


def deployment(name):
    # Scaled to zero: this benchmark is about the store, the API and watches; with a
    # replica each of the 10,000 objects would start a pod (a process), and the figures
    # would measure pod start-up instead (bench/pods.py does that).
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "switchyard/demo:blue"}]},
            },
        },
    }


class Server:
    def __init__(self, binary, data_dir):
        self.binary, self.data_dir = binary, data_dir
        record = os.path.join(data_dir, "server.json")
        if os.path.exists(record):
            os.remove(record)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [binary, "server", "--listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0", "--ingress-listen", "127.0.0.1:0", "--data-dir", data_dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with open(record) as f:
                    self.address = json.load(f)["address"]
                break
            except (OSError, ValueError, KeyError):
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start")
                time.sleep(0.0005)
        host, port = self.address.rsplit(":", 1)
        self.host, self.port = host, int(port)
        # The API serves TLS with the data dir's own CA (written before server.json).
        self.tls = ssl.create_default_context(cafile=os.path.join(data_dir, "pki", "ca.crt"))
        while True:
            try:
                c = http.client.HTTPSConnection(self.host, self.port, timeout=5, context=self.tls)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server not ready")
            time.sleep(0.0005)
        self.ready_after = time.perf_counter() - self.started
        with open(os.path.join(data_dir, "token")) as f:
            self.token = f.read().strip()
        self.conn = http.client.HTTPSConnection(self.host, self.port, timeout=30, context=self.tls)

    def call(self, method, path, body=None, content_type="application/json"):
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": content_type}
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data)

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/switchyard")
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--watch-samples", type=int, default=500)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="switchyard-bench-")
    results = {}
    try:
        # 1. start to ready, on a fresh data dir each time and on one with 1,000 objects.
        fresh = []
        for i in range(args.starts):
            s = Server(args.binary, os.path.join(root, f"start{i}"))
            fresh.append(s.ready_after * 1000)
            s.stop()
        results["start_ms_p50"] = statistics.median(fresh)

        data = os.path.join(root, "main")
        s = Server(args.binary, data)
        # 2a. 1,000 objects in one set.
        items = [deployment(f"set-{i}") for i in range(1000)]
        t = time.perf_counter()
        s.call("POST", "/switchyard/v1/apply?namespace=default", {"items": items})
        results["apply_set_objects_per_s"] = 1000 / (time.perf_counter() - t)
        # 2b. 1,000 separate creates over one keep-alive connection.
        t = time.perf_counter()
        for i in range(1000):
            s.call("POST", "/apis/apps/v1/namespaces/default/deployments", deployment(f"one-{i}"))
        results["apply_single_objects_per_s"] = 1000 / (time.perf_counter() - t)

        # 3. watch latency: PATCH, then read the event on an open watch.
        listing = s.call("GET", "/apis/apps/v1/namespaces/default/deployments?fieldSelector=metadata.name%3Dset-0")
        rv = listing["metadata"]["resourceVersion"]
        watch = http.client.HTTPSConnection(s.host, s.port, timeout=30, context=s.tls)
        watch.request(
            "GET",
            f"/apis/apps/v1/namespaces/default/deployments?watch=true&resourceVersion={rv}"
            "&fieldSelector=metadata.name%3Dset-0",
            headers={"Authorization": f"Bearer {s.token}"},
        )
        stream = watch.getresponse()
        latencies = []
        deadline = time.monotonic() + 120
        for i in range(args.watch_samples):
            if time.monotonic() > deadline:
                break
            t = time.perf_counter()
            s.call(
                "PATCH",
                "/apis/apps/v1/namespaces/default/deployments/set-0",
                {"metadata": {"annotations": {"bench": str(i)}}},
                "application/merge-patch+json",
            )
            while True:
                line = stream.readline()
                event = json.loads(line)
                if event["object"]["metadata"].get("annotations", {}).get("bench") == str(i):
                    break
            latencies.append((time.perf_counter() - t) * 1000)
        watch.close()
        results["watch_ms_p50"] = percentile(latencies, 50)
        results["watch_ms_p99"] = percentile(latencies, 99)

        # 4. RSS at 10,000 objects (2,000 exist; add 8,000 in sets of 1,000).
        for batch in range(8):
            items = [deployment(f"bulk-{batch}-{i}") for i in range(1000)]
            s.call("POST", "/switchyard/v1/apply?namespace=default", {"items": items})
        results["rss_mib_10k_objects"] = s.rss_mib()
        s.stop()

        # Restart on the 10,000-object data dir.
        restarts = []
        for _ in range(5):
            s = Server(args.binary, data)
            restarts.append(s.ready_after * 1000)
            s.stop()
        results["start_ms_p50_10k_objects"] = statistics.median(restarts)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(json.dumps({k: round(v, 2) for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
