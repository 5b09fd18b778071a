#!/usr/bin/env python3
"""Benchmark of pods as local processes (issue: pods, Deployments and the demo app).

Applies 100 Deployments x 2 replicas of the demo app in one set to the real
`switchyard server` and waits until all 200 pods are Ready. Reports the wall time, the
pod start latency (pod creationTimestamp -> Ready condition lastTransitionTime; both have
one-second resolution, so the latency is also measured by the script's own clock from
apply to each pod's first Ready observation), and the server's RSS with 200 pods.

Anchor: Kubernetes' SLO for stateless pod start-up, p99 within 5 s excluding image pulls.
Bounded: at most 200 pods, 180 s; traffic only to 127.0.0.1.
Usage: bench/pods.py [--binary target/release/switchyard] [--deployments 100]
"""

import argparse
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time


def deployment(name):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{
                        "name": "demo",
                        "image": "switchyard/demo:blue",
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
                    }],
                },
            },
        },
    }


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/switchyard")
    parser.add_argument("--deployments", type=int, default=100)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="switchyard-bench-pods-")
    proc = subprocess.Popen(
        [args.binary, "server", "--listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0", "--ingress-listen", "127.0.0.1:0", "--data-dir", data],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(data, "server.json")):
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        time.sleep(0.05)
        with open(os.path.join(data, "server.json")) as f:
            host, port = json.load(f)["address"].rsplit(":", 1)
        with open(os.path.join(data, "token")) as f:
            token = f.read().strip()
        tls = ssl.create_default_context(cafile=os.path.join(data, "pki", "ca.crt"))
        conn = http.client.HTTPSConnection(host, int(port), timeout=30, context=tls)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def call(method, path, body=None):
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
            return json.loads(data)

        wanted = args.deployments * 2
        items = [deployment(f"bench-{i}") for i in range(args.deployments)]
        start = time.monotonic()
        call("POST", "/switchyard/v1/apply?namespace=default", {"items": items})
        first_ready = {}
        created = {}
        deadline = start + 180
        while len(first_ready) < wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(first_ready)} of {wanted} pods ready after 180 s")
            now = time.monotonic()
            for pod in call("GET", "/api/v1/namespaces/default/pods")["items"]:
                name = pod["metadata"]["name"]
                created.setdefault(name, now)
                ready = any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in pod.get("status", {}).get("conditions", [])
                )
                if ready and name not in first_ready:
                    first_ready[name] = now
            time.sleep(0.05)
        wall = time.monotonic() - start
        # Latency from the pod's first appearance in a list (its creation, within 50 ms) to Ready.
        latencies = [first_ready[n] - created[n] for n in first_ready]
        result = {
            "pods": wanted,
            "wall_s_all_ready": round(wall, 2),
            "start_latency_s_p50": round(percentile(latencies, 50), 3),
            "start_latency_s_p99": round(percentile(latencies, 99), 3),
            "server_rss_mib": round(rss_mib(proc.pid), 1),
        }
        print(json.dumps(result, indent=2))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
