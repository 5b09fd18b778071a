#!/usr/bin/env python3
"""Benchmark of Rollouts (issue: blue/green and canary releases).

1. Switch time: a blue/green Rollout behind the ingress, under wrk at full rate through the
   ingress. For each of N releases: set the image, wait for the pause, then `promote`; the
   switch time is from the promote to the first moment after which every request seen by
   four probing clients (keep-alive, their own connections) answers the new version. wrk
   reports the error count (non-2xx and socket errors) over the whole run.
2. Engine CPU: 50 canary Rollouts released at once (steps setWeight 10/30/60 with 2 s
   pauses); the server's CPU seconds (utime+stime from /proc) from the release until all
   are Healthy, and its average CPU share over that time.

Bounded in time and requests; traffic only to 127.0.0.1. Needs wrk (apt-get install wrk).
Usage: bench/rollout.py [--binary target/release/switchyard] [--switches 10]
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
import threading
import time


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Server:
    def __init__(self, binary):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="switchyard-bench-rollout-")
        self.proc = subprocess.Popen(
            [binary, "server", "--data-dir", self.dir, "--listen", "127.0.0.1:0",
             "--dns-listen", "127.0.0.1:0", "--ingress-listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with open(os.path.join(self.dir, "server.json")) as f:
                    record = json.load(f)
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start")
                time.sleep(0.01)
        self.api = record["address"]
        self.ingress = record["ingress"]
        with open(os.path.join(self.dir, "token")) as f:
            self.token = f.read().strip()
        # The API serves TLS with the data dir's own CA.
        self.ca = os.path.join(self.dir, "pki", "ca.crt")
        self.tls = ssl.create_default_context(cafile=self.ca)

    def call(self, method, path, body=None, content_type="application/json"):
        host, port = self.api.rsplit(":", 1)
        conn = http.client.HTTPSConnection(host, int(port), timeout=30, context=self.tls)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": content_type}
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data)

    def apply(self, items):
        self.call("POST", "/switchyard/v1/apply?namespace=default", {"items": items})

    def patch(self, path, body):
        self.call("PATCH", path, body, "application/merge-patch+json")

    def rollout(self, name):
        return self.call("GET", f"/apis/switchyard.dev/v1alpha1/namespaces/default/rollouts/{name}")

    def wait_phase(self, name, phase, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ro = self.rollout(name)
            status = ro.get("status", {})
            if status.get("observedGeneration") == str(ro["metadata"]["generation"]) and status.get("phase") == phase:
                return ro
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not reach {phase}")

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def container(version):
    return {"name": "demo", "image": f"switchyard/demo:{version}",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}}


def rollout(name, strategy, replicas=2):
    return {"apiVersion": "switchyard.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": 2, "containers": [container("blue")]}},
                     "strategy": strategy}}


def service(name, app):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}}


def ingress(name, host, svc):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
            "spec": {"ingressClassName": "switchyard", "rules": [{"host": host, "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": svc, "port": {"number": 8080}}}}]}}]}}


class Probe(threading.Thread):
    """A keep-alive client recording (time, version) of every answer."""

    def __init__(self, address, stop):
        super().__init__(daemon=True)
        self.address, self.stop, self.seen, self.errors = address, stop, [], 0

    def run(self):
        host, port = self.address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        while not self.stop.is_set():
            try:
                conn.request("GET", "/", headers={"Host": "bg.local"})
                response = conn.getresponse()
                body = response.read()
                version = json.loads(body)["version"] if response.status == 200 else None
                if version is None:
                    self.errors += 1
                self.seen.append((time.monotonic(), version))
            except Exception:
                self.errors += 1
                conn = http.client.HTTPConnection(host, int(port), timeout=5)


def switch_times(server, switches, wrk_seconds):
    server.apply([rollout("bg", {"blueGreen": {"activeService": "bg-active", "previewService": "bg-preview",
                                                "autoPromotionEnabled": False, "scaleDownDelaySeconds": 5}}),
                  service("bg-active", "bg"), service("bg-preview", "bg"), ingress("bg", "bg.local", "bg-active")])
    server.wait_phase("bg", "Healthy")
    time.sleep(1.5)  # let the first pods pass their readiness probe and the ingress load its table
    wrk = subprocess.Popen(["wrk", "-t2", "-c32", f"-d{wrk_seconds}s", "-H", "Host: bg.local",
                            f"http://{server.ingress}/"], stdout=subprocess.PIPE, text=True)
    stop = threading.Event()
    probes = [Probe(server.ingress, stop) for _ in range(4)]
    for p in probes:
        p.start()
    results = []
    version = "blue"
    for i in range(switches):
        version = "green" if version == "blue" else "blue"
        server.patch("/apis/switchyard.dev/v1alpha1/namespaces/default/rollouts/bg",
                     {"spec": {"template": {"spec": {"containers": [container(version)]}}}})
        server.wait_phase("bg", "Paused")
        time.sleep(1.2)  # the preview pods pass readiness (period 1 s)
        t0 = time.monotonic()
        server.patch("/apis/switchyard.dev/v1alpha1/namespaces/default/rollouts/bg/status",
                     {"status": {"pauseConditions": None}})
        server.wait_phase("bg", "Healthy")
        time.sleep(0.5)
        last_old = max((t for p in probes for (t, v) in p.seen if t >= t0 and v != version), default=t0)
        results.append((last_old - t0) * 1000)
    stop.set()
    output, _ = wrk.communicate(timeout=wrk_seconds + 30)
    errors = 0
    for line in output.splitlines():
        if "Non-2xx" in line:
            errors += int(line.split(":")[1])
        if "Socket errors" in line:
            errors += sum(int(part.split()[1]) for part in line.split(":", 1)[1].split(","))
    rps = next((float(l.split(":")[1]) for l in output.splitlines() if l.startswith("Requests/sec")), 0.0)
    probe_errors = sum(p.errors for p in probes)
    return results, errors, probe_errors, rps


def engine_cpu(server, count=50):
    strategy = {"canary": {"steps": [{"setWeight": 10}, {"pause": {"duration": 2}},
                                     {"setWeight": 30}, {"pause": {"duration": 2}},
                                     {"setWeight": 60}, {"pause": {"duration": 2}}]}}
    server.apply([rollout(f"r{i}", strategy, replicas=1) for i in range(count)])
    for i in range(count):
        server.wait_phase(f"r{i}", "Healthy", timeout=120)
    time.sleep(2)
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    for i in range(count):
        server.patch(f"/apis/switchyard.dev/v1alpha1/namespaces/default/rollouts/r{i}",
                     {"spec": {"template": {"spec": {"containers": [container("green")]}}}})
    for i in range(count):
        server.wait_phase(f"r{i}", "Healthy", timeout=180)
    cpu, elapsed = server.cpu_seconds() - cpu0, time.monotonic() - t0
    return cpu, elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/switchyard")
    parser.add_argument("--switches", type=int, default=10)
    args = parser.parse_args()
    server = Server(args.binary)
    try:
        times, wrk_errors, probe_errors, rps = switch_times(server, args.switches, wrk_seconds=args.switches * 6 + 5)
    finally:
        server.stop()
    server = Server(args.binary)
    try:
        cpu, elapsed = engine_cpu(server)
    finally:
        server.stop()
    print(json.dumps({
        "switches": len(times),
        "switch_ms_p50": round(statistics.median(times), 1),
        "switch_ms_p99": round(percentile(times, 99), 1),
        "switch_ms_max": round(max(times), 1),
        "wrk_requests_per_s_during": round(rps, 1),
        "wrk_errors": wrk_errors,
        "probe_errors": probe_errors,
        "rollouts": 50,
        "release_wall_s": round(elapsed, 1),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_share": round(cpu / elapsed, 3),
    }, indent=2))


if __name__ == "__main__":
    sys.exit(main())
