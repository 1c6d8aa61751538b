#!/usr/bin/env python3
"""make bench-operator: the operator under load, and its overhead, on the test cluster.

1. Load: 30 one-step ImageBuilds applied at once in 3 namespaces (all of the first namespace's,
   then the second's, then the third's: the order that starves later namespaces under plain
   FIFO), with the operator's concurrency limit at 4 (cluster and per namespace). Checks that
   all end Succeeded, that each namespace's builds started in their order of creation, and that
   the namespaces shared the slots fairly while all of them had builds waiting. Reports the
   operator's peak memory (VmHWM of its process), reconciles per build and API writes per
   build (its /metrics), Events per build, and the reconciles of the 30 s after the last build
   ended (a finished build is not reconciled again until something changes: 0 expected).
2. Overhead: apply -> Succeeded of a one-step build, against the same build pod created as a
   bare Pod (the pod spec the operator made, without the operator), 3 runs each, medians, with
   a breakdown from the objects' timestamps.
3. Warm caches in fresh pods (issue 17, part 5): an npm-like build whose dependency step fills
   a 500 MB cache mount (500 files of 1 MiB from /dev/urandom, skipped when the cache holds
   them) and installs a few of them into the layer, then a source step. Cold: a new namespace
   (new cache claim) and an empty registry cache. Then a one-file change in a fresh pod twice:
   through the cache claim (same namespace, no registry cache: the dependency step reruns on a
   warm cache), and through `cache.registry` (a new namespace, so a new empty claim: the
   dependency step comes from the registry cache that the cold build exported with mode max).
   apply -> Succeeded of each, BENCH_RUNS rounds, medians, as a fraction of the cold build.

Writes bench/results/operator.md and .json. Needs root (it reads the operator's /proc entry
and runs a registry), the test kit (or KUBECONFIG) and `make images` (it deploys Kiln with
scripts/deploy and the concurrency limit; KILN_BENCH_SKIP_DEPLOY=1 uses the running one as is).
Knobs: BENCH_BUILDS (30), BENCH_NAMESPACES (3), BENCH_CONCURRENCY (4), BENCH_RUNS (3),
BENCH_PARTS (load,overhead,warm: which parts run; the report keeps the last figures of the others).
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILDS = int(os.environ.get("BENCH_BUILDS", "30"))
NAMESPACES = int(os.environ.get("BENCH_NAMESPACES", "3"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
OPERATOR_NS = os.environ.get("KILN_NAMESPACE_DEPLOY", "kiln-system")
TIMEOUT = 900
PARTS = os.environ.get("BENCH_PARTS", "load,overhead,warm").split(",")


def say(msg):
    print(f"==> {msg} ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)


def sh(*args, stdin=None, check=True):
    r = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: {r.stderr}{r.stdout}")
    return r.stdout


def kubectl(*args, stdin=None, check=True):
    return sh("kubectl", *args, stdin=stdin, check=check)


def kjson(*args):
    return json.loads(kubectl(*args, "-o", "json"))


def ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def kit_env():
    if os.environ.get("KUBECONFIG"):
        return
    kit = sh(os.path.join(ROOT, "scripts/k8s-kit")).strip()
    subprocess.run([f"{kit}/up"], check=True, stdout=subprocess.DEVNULL)
    for line in sh(f"{kit}/env").splitlines():
        m = re.match(r'export (\w+)=(.*)', line)
        if m:
            value = m.group(2).strip('"').replace('"$PATH"', os.environ["PATH"]).replace("$PATH", os.environ["PATH"])
            os.environ[m.group(1)] = value


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_registry(work):
    host = os.environ["K8S_KIT_NODE_IP"]
    port = free_port(host)
    os.makedirs(f"{work}/registry")
    with open(f"{work}/registry/config.yml", "w") as f:
        f.write(
            f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {work}/registry/storage\n"
            f"http:\n  addr: {host}:{port}\n"
        )
    proc = subprocess.Popen(
        ["docker-registry", "serve", f"{work}/registry/config.yml"],
        stdout=open(f"{work}/registry/log", "w"),
        stderr=subprocess.STDOUT,
    )
    for _ in range(100):
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"{host}:{port}"


def seed_base(work, registry):
    kiln = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release/kiln")
    os.makedirs(f"{work}/base")
    sh("bash", os.path.join(ROOT, "tests/reference/base/mkrootfs.sh"), f"{work}/rootfs", f"{work}/base/rootfs.tar")
    with open(f"{work}/base/Dockerfile", "w") as f:
        f.write('FROM scratch\nADD rootfs.tar /\nCMD ["sh"]\n')
    base = f"{registry}/bench/busybox:1"
    sh(kiln, "build", "--progress=quiet", "--cache-dir", f"{work}/state", "--insecure-registry", registry,
       "-t", base, "--push", f"{work}/base")
    return base


def build_yaml(name, image, dockerfile):
    body = "\n".join("          " + line for line in dockerfile.splitlines())
    return (
        f"apiVersion: kiln.dev/v1alpha1\nkind: ImageBuild\nmetadata:\n  name: {name}\nspec:\n"
        f"  source:\n    inline:\n      files:\n        Dockerfile: |\n{body}\n"
        f"  output:\n    image: {image}\n    insecure: true\n"
    )


def operator_pod():
    pods = kjson("get", "pods", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/component=operator")["items"]
    pods = [p for p in pods if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"]
    assert len(pods) == 1, f"expected one running operator pod, found {len(pods)}"
    return pods[0]


def operator_pid(pod):
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    out = sh("ctr", "--address", os.environ["K8S_KIT_CONTAINERD_SOCK"], "-n", "k8s.io", "tasks", "ls")
    for line in out.splitlines()[1:]:
        parts = line.split()
        if parts and parts[0] == cid:
            return int(parts[1])
    raise SystemExit(f"no containerd task for the operator container {cid}")


def proc_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def metrics(pod):
    ip = pod["status"]["podIP"]
    text = sh("curl", "-sf", f"http://{ip}:8080/metrics")
    out = {"reconciles": 0.0, "writes": 0.0, "errors": 0.0, "requests": 0.0, "by_verb": {}}
    for line in text.splitlines():
        m = re.match(r'kiln_api_requests_total\{verb="(\w+)"\} (\S+)', line)
        if m:
            out["requests"] += float(m.group(2))
            out["by_verb"][m.group(1)] = float(m.group(2))
        if line.startswith("kiln_reconciles_total"):
            out["reconciles"] += float(line.split()[-1])
        elif line.startswith("kiln_api_writes_total"):
            out["writes"] += float(line.split()[-1])
        elif line.startswith("kiln_reconcile_errors_total"):
            out["errors"] += float(line.split()[-1])
    return out


def ib_phases(namespaces):
    out = {}
    for ns in namespaces:
        for ib in kjson("get", "ib", "-n", ns)["items"]:
            out[(ns, ib["metadata"]["name"])] = ib
    return out


def load(registry, base, stamp):
    namespaces = [f"bench-op-{stamp}-{chr(ord('a') + i)}" for i in range(NAMESPACES)]
    for ns in namespaces:
        kubectl("create", "namespace", ns)
    per_ns = BUILDS // NAMESPACES
    docs = []
    order = []
    for ns in namespaces:
        for i in range(per_ns):
            name = f"b{i:02d}"
            df = f"FROM {base}\nRUN echo {ns}-{name} > /who && sleep 2\n"
            docs.append((ns, build_yaml(name, f"{registry}/bench/{ns}-{name}:1", df)))
            order.append((ns, name))
    pod = operator_pod()
    pid = operator_pid(pod)
    before = metrics(pod)
    say(f"applying {len(docs)} ImageBuilds in {NAMESPACES} namespaces, concurrency {CONCURRENCY}")
    start = time.time()
    # One kubectl per namespace, in order: each stream's objects are created in document order.
    for ns in namespaces:
        stream = "\n---\n".join(d for n, d in docs if n == ns)
        kubectl("apply", "-n", ns, "-f", "-", stdin=stream)
    samples = []
    peak_rss = 0
    first_end = None
    while True:
        phases = ib_phases(namespaces)
        running = {ns: 0 for ns in namespaces}
        waiting = {ns: 0 for ns in namespaces}
        for (ns, _), ib in phases.items():
            st = ib.get("status", {})
            if st.get("phase") in ("Building",):
                running[ns] += 1
            elif st.get("phase") in (None, "Pending", "Planning"):
                waiting[ns] += 1
        samples.append((time.time() - start, running, waiting))
        peak_rss = max(peak_rss, proc_kib(pid, "VmRSS"))
        done = [ib for ib in phases.values() if ib.get("status", {}).get("phase") in ("Succeeded", "Failed", "Cancelled")]
        if done and first_end is None:
            first_end = time.time() - start
        if len(done) == len(order):
            break
        if time.time() - start > TIMEOUT:
            raise SystemExit(f"only {len(done)} of {len(order)} builds ended in {TIMEOUT}s")
        time.sleep(0.5)
    wall = time.time() - start
    after = metrics(pod)
    say("all builds ended; watching 30 s for reconciles of finished builds")
    time.sleep(30)
    idle = metrics(pod)
    hwm = proc_kib(pid, "VmHWM")
    phases = ib_phases(namespaces)
    failed = [k for k, ib in phases.items() if ib["status"]["phase"] != "Succeeded"]
    # Admission order: in each namespace, build pods were created in the builds' order.
    order_ok = True
    order_detail = {}
    for ns in namespaces:
        pods = {p["metadata"]["labels"].get("kiln.dev/build"): ts(p["metadata"]["creationTimestamp"])
                for p in kjson("get", "pods", "-n", ns, "-l", "kiln.dev/role=build")["items"]}
        created = [pods.get(name, 0) for (n, name) in order if n == ns]
        ok = all(a <= b for a, b in zip(created, created[1:]))
        order_ok &= ok
        order_detail[ns] = ok
    # Fair sharing: once the first build has ended (the first slots go to whatever exists when
    # they are free: the first namespace's builds reach the operator before the others'), each
    # freed slot goes to the namespace running the fewest while all have builds waiting, so no
    # namespace runs 2 more than another (4 slots over 3 namespaces: 2/1/1 is fair). A sample
    # can catch the moment between a build's end and the next admission.
    contended = [(t, r) for t, r, w in samples
                 if first_end is not None and t >= first_end and all(w[ns] > 0 for ns in namespaces)]
    spreads = [max(r.values()) - min(r.values()) for _, r in contended]
    spread = max(spreads, default=0)
    within_one = round(sum(1 for x in spreads if x <= 1) / len(spreads), 2) if spreads else None
    max_running = max(sum(r.values()) for _, r in ((t, r) for t, r, w in samples))
    events = 0
    for ns in namespaces:
        for e in kjson("get", "events", "-n", ns)["items"]:
            if e["involvedObject"].get("kind") == "ImageBuild":
                events += 1
    n = len(order)
    result = {
        "builds": n,
        "namespaces": NAMESPACES,
        "concurrency": CONCURRENCY,
        "succeeded": n - len(failed),
        "failed": [f"{a}/{b}" for a, b in failed],
        "wall_seconds": round(wall, 1),
        "admission_in_creation_order": order_ok,
        "admission_order_by_namespace": order_detail,
        "fair_share_max_spread": spread,
        "fair_share_samples_within_1": within_one,
        "contended_samples": len(contended),
        "max_running_seen": max_running,
        "operator_peak_rss_mib": round(max(hwm, peak_rss) / 1024, 1),
        "reconciles_per_build": round((after["reconciles"] - before["reconciles"]) / n, 1),
        "api_writes_per_build": round((after["writes"] - before["writes"]) / n, 1),
        "api_requests_per_build": round((after["requests"] - before["requests"]) / n, 1),
        "api_requests_per_build_by_verb": {
            v: round((c - before["by_verb"].get(v, 0.0)) / n, 2)
            for v, c in sorted(after["by_verb"].items())
            if c - before["by_verb"].get(v, 0.0) > 0
        },
        "api_requests_in_30s_after": idle["requests"] - after["requests"],
        "reconcile_errors": after["errors"] - before["errors"],
        "events_per_build": round(events / n, 1),
        "reconciles_in_30s_after": idle["reconciles"] - after["reconciles"],
    }
    for ns in namespaces:
        kubectl("delete", "namespace", ns, "--wait=false")
    return result


def overhead(registry, base, stamp):
    ns = f"bench-op-{stamp}-overhead"
    kubectl("create", "namespace", ns)
    ops, bares, breakdowns = [], [], []
    for i in range(RUNS):
        name = f"one-{i}"
        df = f"FROM {base}\nRUN echo run-{i} > /x\n"
        yaml = build_yaml(name, f"{registry}/bench/{ns}-{name}:1", df)
        seconds, ib = apply_and_wait(ns, yaml, name)
        t1 = time.time()
        ops.append(seconds)
        pod = kjson("get", "pod", "-n", ns, ib["status"]["podName"])
        c = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        created = ts(ib["metadata"]["creationTimestamp"])
        breakdowns.append({
            "to_pod_created": ts(pod["metadata"]["creationTimestamp"]) - created,
            "pod_start": ts(c["startedAt"]) - ts(pod["metadata"]["creationTimestamp"]),
            "build_and_push": ts(c["finishedAt"]) - ts(c["startedAt"]),
            "to_status": t1 - ts(c["finishedAt"]),
        })
        # The same pod, bare: no operator, no owner, a new name, pushing to another tag.
        bare = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"bare-{i}", "namespace": ns},
            "spec": pod["spec"],
        }
        spec = bare["spec"]
        spec.pop("nodeName", None)
        for c in spec.get("containers", []):
            c["args"] = [a.replace(f"{ns}-{name}:1", f"{ns}-bare-{i}:1") for a in c.get("args", [])]
        t0 = time.time()
        kubectl("create", "-f", "-", stdin=json.dumps(bare))
        while True:
            p = kjson("get", "pod", "-n", ns, f"bare-{i}")
            if p["status"].get("phase") in ("Succeeded", "Failed"):
                break
            time.sleep(0.1)
        assert p["status"]["phase"] == "Succeeded", p["status"]
        bares.append(time.time() - t0)
    kubectl("delete", "namespace", ns, "--wait=false")
    med = lambda xs: round(statistics.median(xs), 2)
    return {
        "runs": RUNS,
        "operator_seconds": [round(x, 2) for x in ops],
        "bare_pod_seconds": [round(x, 2) for x in bares],
        "operator_median": med(ops),
        "bare_pod_median": med(bares),
        "ratio": round(statistics.median(ops) / statistics.median(bares), 2),
        "breakdown_median": {k: med([b[k] for b in breakdowns]) for k in breakdowns[0]},
    }

WARM_DOCKERFILE = """FROM {base}
COPY deps.lock /app/deps.lock
RUN --mount=type=cache,id=deps,target=/cache sh -c 'set -e; if [ ! -f /cache/filled ]; then i=0; while [ $i -lt 500 ]; do head -c 1048576 /dev/urandom > /cache/pkg-$i; i=$((i+1)); done; touch /cache/filled; fi; mkdir -p /app/node_modules; cp /cache/pkg-1 /cache/pkg-2 /app/node_modules/'
COPY src/ /app/src/
RUN cat /app/src/* > /app/out
"""


def warm_yaml(name, image, base, change, cache_ref):
    files = {
        "Dockerfile": WARM_DOCKERFILE.format(base=base),
        "deps.lock": "left-pad 1.3.0\nlodash 4.17.21\n",
        "src/index.js": f"console.log('change {change}')\n",
    }
    body = ""
    for path, text in files.items():
        body += f"        {path}: |\n" + "".join(f"          {line}\n" for line in text.splitlines())
    cache = f"  cache:\n    registry: {{ref: \"{cache_ref}\", mode: max}}\n" if cache_ref else ""
    return (
        f"apiVersion: kiln.dev/v1alpha1\nkind: ImageBuild\nmetadata:\n  name: {name}\nspec:\n"
        f"  source:\n    inline:\n      files:\n{body}"
        f"  output:\n    image: {image}\n    insecure: true\n{cache}"
    )


def apply_and_wait(ns, yaml, name):
    """apply -> Succeeded, in seconds; the ImageBuild's final object."""
    t0 = time.time()
    kubectl("apply", "-n", ns, "-f", "-", stdin=yaml)
    while True:
        ib = kjson("get", "ib", "-n", ns, name)
        if ib.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            break
        if time.time() - t0 > TIMEOUT:
            raise SystemExit(f"bench-operator: {ns}/{name} did not end in {TIMEOUT} s")
        time.sleep(0.1)
    seconds = time.time() - t0
    assert ib["status"]["phase"] == "Succeeded", ib["status"]
    return seconds, ib


def worker_facts(ns, ib):
    """The build pod's creation -> worker start (s, 1 s resolution) and the worker's own
    duration (its result's durationSeconds)."""
    pod = kjson("get", "pod", "-n", ns, ib["status"]["podName"])
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    result = json.loads(state.get("message") or "{}")
    return {
        "pod_start": ts(state["startedAt"]) - ts(pod["metadata"]["creationTimestamp"]),
        "worker": result.get("durationSeconds"),
    }


def warm(registry, base, stamp):
    cold, via_claim, via_registry, steps, facts = [], [], [], {}, {}
    for i in range(RUNS):
        ns, ns_reg = f"bench-warm-{stamp}-{i}", f"bench-warm-{stamp}-{i}-reg"
        for n in (ns, ns_reg):
            kubectl("create", "namespace", n)
        cache_ref = f"{registry}/bench/warm-{stamp}-{i}:cache"
        image = lambda n: f"{registry}/bench/warm-{stamp}-{i}-{n}:1"
        secs, ib = apply_and_wait(ns, warm_yaml("cold", image("cold"), base, 0, cache_ref), "cold")
        cold.append(secs)
        steps.setdefault("cold", []).append(ib["status"].get("steps"))
        facts.setdefault("cold", []).append(worker_facts(ns, ib))
        # A one-file change, a fresh pod, the claim the cold build filled; no layer cache.
        secs, ib = apply_and_wait(ns, warm_yaml("claim", image("claim"), base, 1, None), "claim")
        via_claim.append(secs)
        steps.setdefault("claim", []).append(ib["status"].get("steps"))
        facts.setdefault("claim", []).append(worker_facts(ns, ib))
        warm_claims = [c for c in ib["status"].get("caches", []) if c.get("warm")]
        assert warm_claims, f"the second build's cache claim was not warm: {ib['status']}"
        # The same change in another namespace: a new, empty claim, the registry cache.
        secs, ib = apply_and_wait(ns_reg, warm_yaml("registry", image("registry"), base, 1, cache_ref), "registry")
        via_registry.append(secs)
        steps.setdefault("registry", []).append(ib["status"].get("steps"))
        facts.setdefault("registry", []).append(worker_facts(ns_reg, ib))
        for n in (ns, ns_reg):
            kubectl("delete", "namespace", n, "--wait=false")
    med = lambda xs: round(statistics.median(xs), 2)
    return {
        "runs": RUNS,
        "cold_seconds": [round(x, 2) for x in cold],
        "claim_seconds": [round(x, 2) for x in via_claim],
        "registry_seconds": [round(x, 2) for x in via_registry],
        "cold_median": med(cold),
        "claim_median": med(via_claim),
        "registry_median": med(via_registry),
        "claim_ratio": round(statistics.median(via_claim) / statistics.median(cold), 2),
        "registry_ratio": round(statistics.median(via_registry) / statistics.median(cold), 2),
        "steps": steps,
        "breakdown_median": {
            kind: {k: med([f[k] for f in fs if f[k] is not None]) for k in ("pod_start", "worker")}
            for kind, fs in facts.items()
        },
    }


def measured(result, part):
    """When and at which commit a part's figures were taken."""
    date = result.get(f"{part}_measured", result["date"])
    commit = result.get(f"{part}_commit")
    return f"measured {date}, commit `{commit}`" if commit else f"measured {date}"


def write(result):
    out = os.path.join(ROOT, "bench/results")
    with open(os.path.join(out, "operator.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    L, O = result["load"], result["overhead"]
    md = f"""# Operator bench (`make bench-operator`)

Written {result['date']} on the test kit (Kubernetes 1.20, one node, 2 cores shared), commit
`{result['commit']}`. Each part names when and at which commit it was measured: a partial run
(`BENCH_PARTS`) keeps the other parts' figures. bench/operator.py says how each figure is taken.

## {L['builds']} ImageBuilds at once, concurrency {L['concurrency']}, {L['namespaces']} namespaces ({measured(result, 'load')})

| figure | value |
|---|---|
| ended Succeeded | {L['succeeded']} of {L['builds']} |
| wall time, first apply to last Succeeded | {L['wall_seconds']} s |
| builds started in creation order, per namespace | {'yes' if L['admission_in_creation_order'] else 'NO'} |
| fair sharing: most running in one namespace minus fewest, while all had builds waiting, after the first build ended | at most {L['fair_share_max_spread']}; at most 1 in {L.get('fair_share_samples_within_1')} of {L['contended_samples']} samples |
| most builds running at once | {L['max_running_seen']} (limit {L['concurrency']}) |
| operator peak memory (VmHWM) | {L['operator_peak_rss_mib']} MiB |
| reconciles per build | {L['reconciles_per_build']} |
| API requests per build, every verb (`kiln_api_requests_total`) | {L.get('api_requests_per_build', 'not measured')} ({', '.join(f"{v} {c}" for v, c in L.get('api_requests_per_build_by_verb', {}).items())}) |
| API writes per build (pods, ConfigMaps, status, Events, claims) | {L['api_writes_per_build']} |
| Events per build | {L['events_per_build']} |
| reconcile errors | {L['reconcile_errors']:.0f} |
| reconciles in the 30 s after the last build ended | {L['reconciles_in_30s_after']:.0f} |
| API requests in the 30 s after (watch renewals only, when 0 reconciles) | {L.get('api_requests_in_30s_after', 'not measured')} |

The operator reads through watch caches, plus a direct GET only where a cache may lag behind
its own write (controller.rs); the requests figure counts every request its client sent during
the run (a watch counts once per connection, not per event).

## apply -> Succeeded of a one-step build, against the same pod run bare ({measured(result, 'overhead')})

| | median of {O['runs']} (s) | runs (s) |
|---|---|---|
| ImageBuild, apply -> `Succeeded` | {O['operator_median']} | {', '.join(map(str, O['operator_seconds']))} |
| the same build pod created bare, create -> `Succeeded` | {O['bare_pod_median']} | {', '.join(map(str, O['bare_pod_seconds']))} |
| ratio | {O['ratio']}x | target: 1.5x or less |

Breakdown of the operator's runs (medians, seconds; the API's timestamps have 1 s resolution):

| apply -> build pod created | pod created -> worker started | build and push | worker ended -> `Succeeded` seen |
|---|---|---|---|
| {O['breakdown_median']['to_pod_created']} | {O['breakdown_median']['pod_start']} | {O['breakdown_median']['build_and_push']} | {O['breakdown_median']['to_status']} |

An inline source is planned
in the operator (no plan pod), and a build without cache mounts makes no PVC.
"""
    W = result.get("warm")
    if W:
        md += f"""
## Warm caches in fresh pods ({measured(result, 'warm')})

An npm-like build: a dependency step fills a 500 MB cache mount (500 files of 1 MiB from
/dev/urandom) unless it is full, and installs 2 MiB of it into the layer; then a source step.
Each build runs in a fresh pod. apply -> `Succeeded`, medians of {W['runs']} rounds:

| build | median (s) | runs (s) | / cold | target |
|---|---|---|---|---|
| cold: new cache claim, empty registry cache | {W['cold_median']} | {', '.join(map(str, W['cold_seconds']))} | 1 | |
| one-file change, through the cache claim (no layer cache: the dependency step reruns on the warm claim) | {W['claim_median']} | {', '.join(map(str, W['claim_seconds']))} | {W['claim_ratio']} | 0.2 or less |
| one-file change, through `cache.registry` (a new, empty claim: the dependency step comes from the registry cache, mode max) | {W['registry_median']} | {', '.join(map(str, W['registry_seconds']))} | {W['registry_ratio']} | 0.2 or less |

Steps (total / cached) of each run: cold {', '.join(f"{x['total']}/{x['cached']}" for x in W['steps']['cold'] if x)};
claim {', '.join(f"{x['total']}/{x['cached']}" for x in W['steps']['claim'] if x)};
registry {', '.join(f"{x['total']}/{x['cached']}" for x in W['steps']['registry'] if x)}.
"""
        B = W.get("breakdown_median")
        if B:
            md += """
Where the time goes (medians, seconds): the build pod's creation -> worker start (1 s
resolution; it includes binding a new cache claim and, for a claim not yet handed over, the init
container that gives it to uid 1000), and the worker's own run (its result's `durationSeconds`: import, build, cache export,
push).

| build | pod created -> worker started | worker |
|---|---|---|
""" + "".join(f"| {k} | {v['pod_start']} | {v['worker']} |\n" for k, v in B.items())
            cw = B.get("cold", {}).get("worker")
            if cw:
                md += (f"\nThe worker's own run against the cold one: claim "
                       f"{round(B['claim']['worker'] / cw, 2)}x, registry "
                       f"{round(B['registry']['worker'] / cw, 2)}x. The rest of a warm build is "
                       "Kubernetes starting the pod. On the claim path the claim is bound and "
                       "already the worker's (its `kiln.dev/cache-owner` annotation), so the pod "
                       "has no init container. The registry path's namespace is fresh: its new "
                       "claim waits for the kit's provisioner and the scheduler's retry, then "
                       "the init container that gives it to uid 1000 "
                       "(`cacheVolumes.ownership: initContainer`, which the kit's hostPath "
                       "storage needs; with `fsGroup` there is none).\n")
    with open(os.path.join(out, "operator.md"), "w") as f:
        f.write(md)
    say(f"wrote {out}/operator.md")


def main():
    if os.geteuid() != 0:
        raise SystemExit("bench-operator runs as root (the registry, the operator's /proc entry)")
    kit_env()
    if os.environ.get("KILN_BENCH_SKIP_DEPLOY") != "1":
        say(f"deploying Kiln with concurrency {CONCURRENCY}")
        env = dict(os.environ)
        if os.path.exists(os.path.join(ROOT, "target/images/tag")):
            env["KILN_SKIP_IMAGES"] = "1"
        subprocess.run(
            [os.path.join(ROOT, "scripts/deploy"),
             "--set", f"config.concurrency.cluster={CONCURRENCY}",
             "--set", f"config.concurrency.perNamespace={CONCURRENCY}"],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )
    work = tempfile.mkdtemp(prefix="kiln-bench-op.")
    registry_proc = None
    try:
        registry_proc, registry = start_registry(work)
        say(f"registry http://{registry}; seeding the base")
        base = seed_base(work, registry)
        stamp = str(int(time.time()))
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": sh("git", "-C", ROOT, "rev-parse", "--short=12", "HEAD").strip(),
        }
        previous = {}
        try:
            with open(os.path.join(ROOT, "bench/results/operator.json")) as f:
                previous = json.load(f)
        except (OSError, ValueError):
            pass
        for part, run in (("load", load), ("overhead", overhead), ("warm", warm)):
            if part in PARTS:
                result[part] = run(registry, base, stamp)
                result[f"{part}_measured"] = result["date"]
                result[f"{part}_commit"] = result["commit"]
                say(f"{part}: {json.dumps(result[part])}")
            elif part in previous:
                result[part] = previous[part]
                result[f"{part}_measured"] = previous.get(f"{part}_measured", previous.get("date"))
                result[f"{part}_commit"] = previous.get(f"{part}_commit", previous.get("commit"))
        write(result)
        load_ok = "load" not in PARTS or (result["load"]["succeeded"] == result["load"]["builds"]
                                          and result["load"]["admission_in_creation_order"])
        if not load_ok:
            raise SystemExit("bench-operator: not every build succeeded in order (see operator.md)")
    finally:
        if registry_proc:
            registry_proc.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--render"]:
        # Rewrite operator.md from operator.json (after a change to the report's layout).
        with open(os.path.join(ROOT, "bench/results/operator.json")) as f:
            write(json.load(f))
    else:
        main()
