#!/usr/bin/env python3
"""make bench: Kiln against BuildKit (inside a private dockerd 20.10) and buildah 1.28.

Runs PERFORMANCE.md's workloads (Dockerfiles in bench/workloads/, contexts generated under
BENCH_DIR) with each peer, alternating peers run by run, and reports the median wall-clock time
and peak memory of each; then runs scripts/bench (registry push and pull against skopeo).
Writes bench/results/latest.md and latest.json (a narrowed or quick run: partial.md and
partial.json). `bench.py --render` rewrites latest.md from latest.json. Standard library only;
run as root.

Environment:
  BENCH_DIR        inputs, work directories and logs (default /var/tmp/kiln-bench)
  BENCH_RUNS       timed runs per workload and peer (default 3)
  BENCH_ONLY       comma list of workloads (cold, noop, incremental, cachemount, smallfiles,
                   bigfiles, smallrun, coldpush, incpush, parallel, registry); default all
  BENCH_PEERS      comma list of kiln, buildkit, buildah (default all three)
  BENCH_QUICK      1: smaller sizes everywhere (a smoke run, not numbers to quote)
  BENCH_BASE       debian (debootstrap minbase, cached in BENCH_DIR; the default) or busybox
  BENCH_COLD_FILES small files written by the cold build (default 20000)
  BENCH_COLD_MB    MB of random objects written by the cold build (default 200)
  BENCH_CACHE_MB   size of the cache mount in MB (default 200; PERFORMANCE.md uses 500)
  BENCH_SMALLFILES files in the smallfiles context (default 50000, as PERFORMANCE.md)
  BENCH_BIGFILES   COUNTxMB for the bigfiles context (default 4x128; PERFORMANCE.md: 8x128)
  BENCH_PARALLEL_MB  MB hashed by each parallel stage (default 480, about 2 s of CPU here)
  BENCH_SIZES      image sizes in MB for scripts/bench (default "200")
  BENCH_NOTE       a sentence put in the results file (say what else ran on the machine)
  BENCH_KILN       a kiln binary to use instead of building target/release/kiln
  BENCH_KEEP       1 to keep the work directories (stores, caches, outputs) afterwards
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS_DIR = ROOT / "bench" / "workloads"
RESULTS = ROOT / "bench" / "results"

PACKAGES = ["docker.io", "buildah", "runc", "debootstrap", "busybox-static", "time", "skopeo",
            "docker-registry"]
DOCKER = "/usr/bin/docker"  # /usr/local/bin/docker is a newer client without this builder
RUNC = "/usr/sbin/runc"  # crun fails on this cgroup-v1 host
BASE_REF = "kiln-bench/base:1"
ALL_PEERS = ["kiln", "buildkit", "buildah"]
TITLES = {"kiln": "Kiln", "buildkit": "BuildKit", "buildah": "buildah"}
BUILD_TIMEOUT = 1800


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    """A peer's step failed; the message is what its table cell shows."""


def last_line(path: Path) -> str:
    """The last meaningful line of a log: what a failure cell shows."""
    if not path.exists():
        return ""
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "error" in ln.lower() or "failed" in ln.lower():
            return ln[-200:]
    return lines[-1][-200:] if lines else ""


def run_to_file(cmd: list[str], out, env: dict | None = None) -> int:
    """Run `cmd` with its output to the open file `out`; its exit code. Raises
    subprocess.TimeoutExpired after BUILD_TIMEOUT. The wait is a blocking waitpid:
    subprocess.run(timeout=...) without pipes polls with sleeps that double up to 50 ms, which
    rounded every short run up (a 10 ms build measured 32 or 64 ms)."""
    p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        p.kill()

    timer = threading.Timer(BUILD_TIMEOUT, kill)
    timer.start()
    try:
        code = p.wait()
    finally:
        timer.cancel()
    if killed.is_set():
        raise subprocess.TimeoutExpired(cmd, BUILD_TIMEOUT)
    return code


def run(cmd: list[str], *, env: dict | None = None, log_to: Path | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    """An untimed helper command; its output goes to `log_to` (or is captured)."""
    if log_to is not None:
        with open(log_to, "ab") as f:
            f.write(f"$ {' '.join(cmd)}\n".encode())
            f.flush()
            p = subprocess.CompletedProcess(cmd, run_to_file(cmd, f, env))
    else:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if check and p.returncode != 0:
        detail = last_line(log_to) if log_to is not None else (p.stderr or p.stdout).strip()[-300:]
        raise Failed(f"`{Path(cmd[0]).name} {cmd[1] if len(cmd) > 1 else ''}` exit "
                     f"{p.returncode}: {detail}")
    return p


# ---------------------------------------------------------------------------------------------
# Sizes and contexts


@dataclass
class Sizes:
    cold_files: int
    cold_mb: int
    cache_mb: int
    small_files: int
    big_count: int
    big_mb: int
    parallel_mb: int

    @staticmethod
    def from_env() -> "Sizes":
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        big = os.environ.get("BENCH_BIGFILES", "2x64" if quick else "4x128").lower().split("x")
        if len(big) != 2:
            sys.exit("bench: BENCH_BIGFILES is COUNTxMB, e.g. 4x128")

        def num(var: str, full: int, small: int) -> int:
            return int(os.environ.get(var, small if quick else full))
        return Sizes(cold_files=num("BENCH_COLD_FILES", 20000, 5000),
                     cold_mb=num("BENCH_COLD_MB", 200, 50),
                     cache_mb=num("BENCH_CACHE_MB", 200, 50),
                     small_files=num("BENCH_SMALLFILES", 50000, 5000),
                     big_count=int(big[0]), big_mb=int(big[1]),
                     parallel_mb=num("BENCH_PARALLEL_MB", 480, 120))


SOURCES = 12


def source_text(name: str, extra: str = "") -> str:
    rng = random.Random(name)
    lines = [f"/* {name} */", "#include <stdio.h>", ""]
    for i in range(rng.randrange(40, 120)):
        lines.append(f"static int f{i}(int x) {{ return x * {rng.randrange(1, 1000)} + {i}; }}")
    if extra:
        lines.append(f"/* {extra} */")
    return "\n".join(lines) + "\n"


def write_main(ctx: Path, token: str = "") -> None:
    """(Re)write src/main.c; a new token is the incremental workload's one-file change."""
    (ctx / "src" / "main.c").write_text(source_text("main.c", f"revision {token}" if token else ""))


def fetch_debs(cache: Path) -> list[Path]:
    """Four small packages that need only libc6, downloaded once with apt-get download."""
    names = ["hello", "tree", "dos2unix", "ed"]
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob("*.deb"))
    if len(debs) == len(names):
        return debs
    for old in debs:
        old.unlink()
    cmd = ["apt-get", "download", "-q", *names]
    # As root, apt warns that its _apt user cannot write here, and downloads anyway.
    if subprocess.run(cmd, cwd=cache, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(cmd, cwd=cache, check=True, capture_output=True)
    debs = sorted(cache.glob("*.deb"))
    if len(debs) != len(names):
        raise RuntimeError(f"apt-get download gave {len(debs)} files for {names}")
    return debs


def gen_cold(ctx: Path, inputs: Path, _sizes: Sizes) -> None:
    (ctx / "debs").mkdir(parents=True)
    for deb in fetch_debs(inputs / "debs"):
        shutil.copy2(deb, ctx / "debs" / deb.name)
    (ctx / "src").mkdir()
    for i in range(SOURCES):
        (ctx / "src" / f"mod{i}.c").write_text(source_text(f"mod{i}.c"))
    write_main(ctx)


def gen_smallfiles(ctx: Path, _inputs: Path, sizes: Sizes) -> None:
    """Distinct text files of 200 B to 4 KiB, 200 to a directory, each headed by its path (so no
    builder can deduplicate them); the text compresses like source code."""
    words = ("fn let mut struct impl return match self Some None Ok Err if else for while loop "
             "pub use mod crate const static async await move where trait enum").split()
    rng = random.Random(sizes.small_files)
    pool = " ".join(rng.choice(words) + ("\n" if rng.random() < 0.1 else "")
                    for _ in range(400_000)).encode()
    for i in range(sizes.small_files):
        sub = ctx / "files" / f"d{i // 200:04}"
        if i % 200 == 0:
            sub.mkdir(parents=True)
        size = rng.randrange(200, 4097)
        start = rng.randrange(0, len(pool) - size)
        header = f"// {sub.name}/f{i}.txt\n".encode()
        (sub / f"f{i}.txt").write_bytes(header + pool[start:start + size - len(header)])


def gen_bigfiles(ctx: Path, _inputs: Path, sizes: Sizes) -> None:
    (ctx / "blobs").mkdir(parents=True)
    for i in range(sizes.big_count):
        with open(ctx / "blobs" / f"blob{i}.bin", "wb") as out:
            for _ in range(sizes.big_mb):
                out.write(os.urandom(1 << 20))


def gen_empty(ctx: Path, _inputs: Path, _sizes: Sizes) -> None:
    ctx.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------------------------------
# Workloads


@dataclass
class Workload:
    name: str
    source: str  # bench/workloads/SOURCE/Dockerfile
    summary: str
    cold: bool  # every timed run starts from an empty build cache (the base image kept)
    args: Callable[[Sizes], dict]
    context_id: Callable[[Sizes], str]  # the generated context, shared by equal ids
    generate: Callable[[Path, Path, Sizes], None]
    setup_args: dict | None = None  # an untimed build with these extra args first
    vary: Callable[[Path], dict] | None = None  # a change before each round; gives build args
    perf: tuple[str, str, str] = ("", "", "")  # PERFORMANCE.md: BuildKit, buildah, Kiln target
    # The physical reference, timed once per round: `cp -a` of the context (PHYSICAL_COPY), the
    # RUN work run directly (PHYSICAL_RUN), or that plus `skopeo copy` of the image (PHYSICAL_PUSH)
    physical: str = ""
    push: bool = False  # each run ends in a push to a local registry (fresh for cold workloads)

    @property
    def dockerfile(self) -> Path:
        return WORKLOADS_DIR / self.source / "Dockerfile"


def cold_args(s: Sizes) -> dict:
    return {"FILES": str(s.cold_files), "MB": str(s.cold_mb)}


def vary_source(ctx: Path) -> dict:
    write_main(ctx, str(time.time_ns()))
    return {}


def vary_bust(_ctx: Path) -> dict:
    return {"BUST": str(time.time_ns())}


PHYSICAL_COPY, PHYSICAL_RUN, PHYSICAL_PUSH = "copy", "run", "push"


# The incremental workload's change reaches these steps (a substring of each) and no other.
INCREMENTAL_EXPECTED = ["COPY src/", "sha256sum *.c", "/data/SUMS /data/LINES /app/",
                        "ls -l /app"]

WORKLOADS = [
    Workload("cold", "cold", "multi-stage, 11 steps: base, dpkg -i of 4 local debs, {cold_files} "
             "small files, {cold_mb} MB of random objects, small final stage; empty cache",
             cold=True, args=cold_args, context_id=lambda s: "cold", generate=gen_cold,
             perf=("10.4", "11.4", "≤ 6; issue 17: ≤ 0.6× BuildKit, spread < 20 %")),
    Workload("noop", "cold", "the cold build again, unchanged: every step cached", cold=False,
             args=cold_args, context_id=lambda s: "cold", generate=gen_cold, setup_args={},
             perf=("0.12", "0.62", "≤ 0.06 (issue: < 0.5, ≥ 2× BuildKit)")),
    Workload("incremental", "cold", "src/main.c changed; only the last steps read it",
             cold=False, args=cold_args, context_id=lambda s: "cold", generate=gen_cold,
             setup_args={}, vary=vary_source, perf=("0.28", "1.11", "≤ 0.14")),
    Workload("cachemount", "cachemount", "RUN with a {cache_mb} MB cache mount reused, layer "
             "cache busted by a build arg", cold=False,
             args=lambda s: {"MB": str(s.cache_mb)}, context_id=lambda s: "empty",
             generate=gen_empty, setup_args={"BUST": "fill"}, vary=vary_bust,
             perf=("0.19 (500 MB)", "0.50 (500 MB)", "≤ 0.1")),
    Workload("smallfiles", "smallfiles", "COPY of {small_files} small files (200 B–4 KiB) into "
             "scratch; empty cache", cold=True, args=lambda s: {},
             context_id=lambda s: f"smallfiles-{s.small_files}", generate=gen_smallfiles,
             physical=PHYSICAL_COPY,
             perf=("39 (21–55) for 50k", "29 for 50k",
                   "≤ 6 for 50k; issue 17: ≤ 0.8× `cp -a`, ≤ 0.2× BuildKit")),
    Workload("bigfiles", "bigfiles", "COPY of {big_count} random files of {big_mb} MB into "
             "scratch; empty cache", cold=True, args=lambda s: {},
             context_id=lambda s: f"bigfiles-{s.big_count}x{s.big_mb}", generate=gen_bigfiles,
             physical=PHYSICAL_COPY,
             perf=("12.5 for 8×128 MB", "22.8 for 8×128 MB", "≤ 12 for 8×128 MB")),
    Workload("smallrun", "smallrun", "one RUN step writing {cold_files} small files on the base; "
             "empty cache", cold=True, args=lambda s: {"FILES": str(s.cold_files)},
             context_id=lambda s: "empty", generate=gen_empty, physical=PHYSICAL_RUN,
             perf=("—", "—", "issue 17: one streaming pass")),
    Workload("coldpush", "cold", "the cold build, then a push of the image to an empty local "
             "registry", cold=True, args=cold_args, context_id=lambda s: "cold",
             generate=gen_cold, physical=PHYSICAL_PUSH, push=True,
             perf=("—", "—", "≤ 0.5× BuildKit, ≤ 1.3× physical")),
    Workload("incpush", "cold", "src/main.c changed, rebuilt, then pushed to the registry that "
             "holds the previous image", cold=False, args=cold_args,
             context_id=lambda s: "cold", generate=gen_cold, setup_args={}, vary=vary_source,
             physical=PHYSICAL_PUSH, push=True,
             perf=("—", "—", "≤ 0.5× BuildKit, ≤ 1.3× physical")),
    Workload("parallel", "parallel", "4 independent stages hashing {parallel_mb} MB each "
             "(about 2 s of CPU at 480 MB), combined; empty cache", cold=True,
             args=lambda s: {"MB": str(s.parallel_mb)}, context_id=lambda s: "empty",
             generate=gen_empty, perf=("7.4", "9.9", "≤ 6.5")),
]
NAMES = [wl.name for wl in WORKLOADS] + ["registry"]


# ---------------------------------------------------------------------------------------------
# Steps: which ran and which came from the cache, read from each builder's plain output


@dataclass
class Steps:
    ran: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"ran": self.ran, "cached": self.cached}


HEADER = re.compile(r"^#(\d+) \[([^\]]+)\] (.*)$")
STATUS = re.compile(r"^#(\d+) (CACHED|DONE|ERROR)")


def parse_buildkit_plain(text: str) -> Steps:
    """Kiln's --progress=plain and BuildKit's plain progress share the `#N [stage i/n] STEP`
    then `#N CACHED` / `#N DONE` form. FROM and [internal] lines are not steps."""
    names: dict[str, str] = {}
    state: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        m = HEADER.match(line)
        if m:
            vertex, where, step = m.groups()
            if where.startswith("internal") or step.startswith("FROM ") or step == "FROM":
                continue
            names.setdefault(vertex, step)
            continue
        m = STATUS.match(line)
        if m and m.group(1) in names:
            vertex, status = m.groups()
            if state.get(vertex) != "CACHED":
                state[vertex] = status
    steps = Steps()
    for vertex, step in names.items():
        (steps.cached if state.get(vertex) == "CACHED" else steps.ran).append(step)
    return steps


def parse_buildah(text: str) -> Steps:
    """buildah bud prints `STEP i/n: INSTR` and, for a cached one, `--> Using cache ID`."""
    steps = Steps()
    current = None
    for line in text.splitlines():
        m = re.match(r"^\[\d+/\d+\] STEP \d+/\d+: (.*)$|^STEP \d+/\d+: (.*)$", line.strip())
        if m:
            if current is not None:
                steps.ran.append(current)
            instr = m.group(1) or m.group(2)
            current = None if instr.startswith("FROM ") else instr
            continue
        if current is not None and line.strip().startswith("--> Using cache"):
            steps.cached.append(current)
            current = None
    if current is not None:
        steps.ran.append(current)
    # Config-only instructions commit nothing with --layers unless last; count only the others.
    config = ("ARG", "ENV", "LABEL", "CMD", "ENTRYPOINT", "EXPOSE", "USER", "WORKDIR")
    steps.ran = [s for s in steps.ran if s.split(" ", 1)[0] not in config]
    steps.cached = [s for s in steps.cached if s.split(" ", 1)[0] not in config]
    return steps


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Timed:
    seconds: float
    peak_kb: int | None  # peak memory of the peer during this run
    steps: Steps | None = None
    detail: dict = field(default_factory=dict)


def proc_status(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class RssSampler:
    """Samples the summed VmRSS of a process tree every 50 ms."""

    def __init__(self, root_pid: int):
        self.root_pid = root_pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            total = sum(proc_status(p, "VmRSS") or 0 for p in descendants(self.root_pid))
            self.peak_kb = max(self.peak_kb, total)
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def timed_run(cmd: list[str], logfile: Path, env: dict | None = None) -> tuple[float, int | None]:
    """Wall clock (time.monotonic) of `cmd` after a sync, and the max RSS of the largest process
    in its tree as GNU time reports it. Raises Failed with the log's last error line."""
    seconds, rss, _cpu = timed_run_cpu(cmd, logfile, env)
    return seconds, rss


def timed_run_cpu(cmd: list[str], logfile: Path,
                  env: dict | None = None) -> tuple[float, int | None, float | None]:
    """timed_run, and the CPU seconds (user + system) of `cmd`'s whole process tree."""
    os.sync()
    rss_file = logfile.with_suffix(".rss")
    with open(logfile, "wb") as f:
        f.write(f"$ {' '.join(cmd)}\n".encode())
        f.flush()
        start = time.monotonic()
        try:
            code = run_to_file(["/usr/bin/time", "-f", "%M %U %S", "-o", str(rss_file), *cmd],
                               f, env)
        except subprocess.TimeoutExpired:
            raise Failed(f"timed out after {BUILD_TIMEOUT} s") from None
        elapsed = time.monotonic() - start
    if code != 0:
        raise Failed(f"exit {code}: {last_line(logfile)}")
    try:
        rss_text, user, system = rss_file.read_text().split()[-3:]
        rss, cpu = int(rss_text), float(user) + float(system)
    except (OSError, ValueError, IndexError):
        rss, cpu = None, None
    return elapsed, rss, cpu


# ---------------------------------------------------------------------------------------------
# Peers


class Peer:
    name = ""

    def __init__(self, env: "Env"):
        self.env = env
        self.work = env.work / self.name
        self.started = False
        self.start_error: str | None = None

    def start(self) -> None: ...

    def reset(self, wl: Workload) -> None:
        """Empty the build cache and remove the workload's image; keep the base image."""

    def build(self, wl: Workload, ctx: Path, dockerfile: Path, args: dict,
              label: str) -> Timed:
        raise NotImplementedError

    def stop(self) -> None: ...

    def has_image(self, wl: Workload) -> bool:
        """Whether the build left its image where it was asked to (checked untimed)."""
        return True

    def version(self) -> str:
        return ""

    def tag(self, wl: Workload) -> str:
        if wl.push:
            return f"{self.env.registry.addr}/kiln-bench/{wl.name}-{self.name}:latest"
        return f"kiln-bench/{wl.name}:latest"

    def logfile(self, label: str) -> Path:
        return self.env.logs / f"{label}-{self.name}.log"

    def warm(self) -> None:
        """A build on the base before any timing, so that no timed run pays for loading the
        base image into the builder's store."""
        ctx = self.env.work / "warm-ctx"
        ctx.mkdir(exist_ok=True)
        (ctx / "Dockerfile").write_text(f"FROM {BASE_REF}\nRUN true\n")
        wl = Workload("warm", "", "", False, lambda s: {}, lambda s: "", gen_empty)
        self.build(wl, ctx, ctx / "Dockerfile", {}, "prepare-warm")


class Kiln(Peer):
    """`kiln build` with its state in --cache-dir: one directory kept across the cached
    workloads, and a fresh one (the base imported by an untimed build) for each cold run."""

    name = "kiln"

    def __init__(self, env):
        super().__init__(env)
        self.bin = kiln_bin()
        self.warm_state = self.work / "state"
        self.cold_state = self.work / "cold-state"
        self.out = self.work / "out"
        self.meta = self.work / "meta"

    def start(self) -> None:
        for d in (self.warm_state, self.out, self.meta):
            d.mkdir(parents=True, exist_ok=True)
        self.started = True
        self.warm()

    def warm(self, state: Path | None = None) -> None:
        ctx = self.env.work / "warm-ctx"
        ctx.mkdir(exist_ok=True)
        (ctx / "Dockerfile").write_text(f"FROM {BASE_REF}\nRUN true\n")
        wl = Workload("warm", "", "", False, lambda s: {}, lambda s: "", gen_empty)
        self.run_build(wl, ctx, ctx / "Dockerfile", {}, "prepare-warm", state or self.warm_state)

    def reset(self, wl: Workload) -> None:
        remove_tree(self.cold_state)
        self.cold_state.mkdir()
        self.warm(self.cold_state)
        shutil.rmtree(self.out / wl.name, ignore_errors=True)

    def build(self, wl, ctx, dockerfile, args, label) -> Timed:
        state = self.cold_state if wl.cold else self.warm_state
        return self.run_build(wl, ctx, dockerfile, args, label, state)

    def run_build(self, wl, ctx, dockerfile, args, label, state: Path) -> Timed:
        meta = self.meta / f"{label}.json"
        cmd = [str(self.bin), "build", str(ctx), "-f", str(dockerfile), "--progress=plain",
               "--cache-dir", str(state),
               "--build-context", f"{BASE_REF}=oci-layout://{self.env.base_layout}",
               "-t", self.tag(wl), "--metadata-file", str(meta)]
        if wl.push:
            cmd += ["--push", "--insecure-registry", self.env.registry.addr]
        else:
            cmd += ["--output", f"type=oci,dest={self.out / wl.name}"]
        for k, v in args.items():
            cmd += ["--build-arg", f"{k}={v}"]
        logfile = self.logfile(label)
        seconds, rss, cpu = timed_run_cpu(cmd, logfile)
        detail = {"cpu_s": cpu}
        try:
            m = json.loads(meta.read_text())
            detail.update({k: m.get(k) for k in ("kiln.steps", "kiln.cached", "kiln.runs")})
        except (OSError, ValueError):
            pass
        steps = parse_buildkit_plain(logfile.read_text(errors="replace"))
        return Timed(seconds, rss, steps, detail)

    def has_image(self, wl: Workload) -> bool:
        if wl.push:
            return self.env.registry.has(self.tag(wl))
        try:
            index = json.loads((self.out / wl.name / "index.json").read_text())
        except (OSError, ValueError):
            return False
        return any(m.get("annotations", {}).get("io.containerd.image.name") == self.tag(wl)
                   for m in index.get("manifests", []))

    def version(self) -> str:
        rev = run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], check=False)
        return f"kiln {rev.stdout.strip()} (release build)"


class BuildKit(Peer):
    """BuildKit embedded in a private dockerd 20.10, started as DESIGN.md shows."""

    name = "buildkit"

    def __init__(self, env):
        super().__init__(env)
        self.sock = self.work / "docker.sock"
        self.pidfile = self.work / "pid"
        self.proc: subprocess.Popen | None = None
        self.denv = dict(os.environ, DOCKER_BUILDKIT="1", DOCKER_HOST=f"unix://{self.sock}",
                         DOCKER_CONFIG=str(self.work / "config"), BUILDKIT_PROGRESS="plain")

    def docker(self, *args: str, label: str, check: bool = True):
        return run([DOCKER, *args], env=self.denv, log_to=self.logfile(label), check=check)

    def start(self) -> None:
        (self.work / "config").mkdir(parents=True, exist_ok=True)
        w = self.work
        cmd = ["dockerd", "--data-root", str(w / "data"), "--exec-root", str(w / "exec"),
               "-H", f"unix://{self.sock}", "--pidfile", str(self.pidfile), "--bridge=none",
               "--iptables=false", "--ip6tables=false"]
        with open(w / "dockerd.log", "ab") as dlog:
            self.proc = subprocess.Popen(cmd, stdout=dlog, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.started = True
        deadline = time.monotonic() + 60
        while subprocess.run([DOCKER, "version"], env=self.denv,
                             capture_output=True).returncode != 0:
            if self.proc.poll() is not None:
                raise Failed(f"dockerd exited {self.proc.returncode} (see {w / 'dockerd.log'})")
            if time.monotonic() > deadline:
                raise Failed("dockerd did not answer within 60 s")
            time.sleep(0.3)
        self.docker("load", "-i", str(self.env.base_docker_tar), label="prepare-load")
        self.docker("image", "inspect", BASE_REF, label="prepare-load")
        self.warm()
        text = self.logfile("prepare-warm").read_text(errors="replace")
        if "resolve docker.io" in text:
            raise Failed(f"BuildKit tried to pull {BASE_REF} instead of using the loaded image")

    def memory_pids(self) -> list[int]:
        """dockerd and its containerd: the processes that hold BuildKit's state."""
        if self.proc is None:
            return []
        pids = [self.proc.pid]
        for p in descendants(self.proc.pid)[1:]:
            try:
                if Path(f"/proc/{p}/comm").read_text().strip() == "containerd":
                    pids.append(p)
            except OSError:
                pass
        return pids

    def reset(self, wl: Workload) -> None:
        label = f"{wl.name}-reset"
        self.docker("image", "rm", "-f", self.tag(wl), label=label, check=False)
        self.docker("builder", "prune", "-af", label=label)

    def build(self, wl, ctx, dockerfile, args, label) -> Timed:
        cmd = [DOCKER, "build", "--network", "none", "-f", str(dockerfile), "-t", self.tag(wl)]
        for k, v in args.items():
            cmd += ["--build-arg", f"{k}={v}"]
        cmd.append(str(ctx))
        pids = self.memory_pids()
        hwm_ok = True
        for p in pids:
            try:
                Path(f"/proc/{p}/clear_refs").write_text("5")  # VmHWM := VmRSS
            except OSError:
                hwm_ok = False
        logfile = self.logfile(label)
        with RssSampler(self.proc.pid) as sampler:
            seconds, _client_rss = timed_run(cmd, logfile, env=self.denv)
            if wl.push:
                pushed, _ = timed_run([DOCKER, "push", self.tag(wl)],
                                      logfile.with_suffix(".push.log"), env=self.denv)
                seconds += pushed
        hwm = sum(proc_status(p, "VmHWM") or 0 for p in pids)
        detail = {"sampled_rss_kb": sampler.peak_kb, "hwm_kb": hwm if hwm_ok else None}
        steps = parse_buildkit_plain(logfile.read_text(errors="replace"))
        return Timed(seconds, hwm if hwm_ok else sampler.peak_kb, steps, detail)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        log("stopping the private dockerd")
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def has_image(self, wl: Workload) -> bool:
        if wl.push and not self.env.registry.has(self.tag(wl)):
            return False
        return run([DOCKER, "image", "inspect", self.tag(wl)], env=self.denv,
                   check=False).returncode == 0

    def version(self) -> str:
        p = run(["dockerd", "--version"], check=False)
        return p.stdout.strip() + " (its embedded BuildKit)"


class Buildah(Peer):
    name = "buildah"

    def __init__(self, env):
        super().__init__(env)
        self.global_args = ["buildah", "--root", str(self.work / "root"),
                            "--runroot", str(self.work / "run"), "--storage-driver", "overlay"]
        # Cache mounts and temporary files live under TMPDIR: keep them in the work directory.
        self.benv = dict(os.environ, TMPDIR=str(self.work / "tmp"))
        self.base_id = ""

    def buildah(self, *args: str, label: str, check: bool = True):
        return run([*self.global_args, *args], env=self.benv, log_to=self.logfile(label),
                   check=check)

    def start(self) -> None:
        (self.work / "tmp").mkdir(parents=True, exist_ok=True)
        self.started = True
        self.buildah("pull", "-q", f"docker-archive:{self.env.base_docker_tar}",
                     label="prepare-load")
        p = run([*self.global_args, "images", "--no-trunc", "--format", "{{.ID}}", BASE_REF],
                env=self.benv)
        self.base_id = p.stdout.split()[0]
        self.warm()

    def reset(self, wl: Workload) -> None:
        label = f"{wl.name}-reset"
        self.buildah("rm", "--all", label=label)
        p = run([*self.global_args, "images", "-a", "-q", "--no-trunc"], env=self.benv)
        ids = sorted({i for i in p.stdout.split() if i and i != self.base_id})
        if ids:
            self.buildah("rmi", "-f", *ids, label=label)

    def build(self, wl, ctx, dockerfile, args, label) -> Timed:
        cmd = [*self.global_args, "bud", "--runtime", RUNC, "--isolation", "oci", "--layers",
               "--pull=never", "--network", "none", "-f", str(dockerfile), "-t", self.tag(wl)]
        for k, v in args.items():
            cmd += ["--build-arg", f"{k}={v}"]
        cmd.append(str(ctx))
        logfile = self.logfile(label)
        seconds, rss = timed_run(cmd, logfile, env=self.benv)
        steps = parse_buildah(logfile.read_text(errors="replace"))
        if wl.push:
            pushed, push_rss = timed_run([*self.global_args, "push", "--tls-verify=false",
                                          self.tag(wl)], logfile.with_suffix(".push.log"),
                                         env=self.benv)
            seconds += pushed
            rss = max(rss or 0, push_rss or 0) or None
        return Timed(seconds, rss, steps)

    def stop(self) -> None:
        if self.started:
            run([*self.global_args, "rm", "--all"], env=self.benv, check=False)
            run([*self.global_args, "umount", "--all"], env=self.benv, check=False)

    def has_image(self, wl: Workload) -> bool:
        if wl.push and not self.env.registry.has(self.tag(wl)):
            return False
        return run([*self.global_args, "inspect", "--type", "image", self.tag(wl)],
                   env=self.benv, check=False).returncode == 0

    def version(self) -> str:
        return (run(["buildah", "--version"], check=False).stdout.strip() + ", "
                + run([RUNC, "--version"], check=False).stdout.splitlines()[0])


PEER_CLASSES = {"kiln": Kiln, "buildkit": BuildKit, "buildah": Buildah}


# ---------------------------------------------------------------------------------------------
# Preparation: packages, Kiln, the base image and the contexts, made once under BENCH_DIR


@dataclass
class Env:
    dir: Path
    runs: int
    keep: bool
    sizes: Sizes
    base_kind: str = "debian"
    base_note: str = ""
    registry: "Registry | None" = None

    @property
    def inputs(self) -> Path:
        return self.dir / "inputs"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def base_layout(self) -> Path:
        return self.inputs / f"base-{self.base_kind}-layout"

    @property
    def base_docker_tar(self) -> Path:
        return self.inputs / f"base-{self.base_kind}-docker.tar"

    def ctx(self, context_id: str) -> Path:
        return self.inputs / "ctx" / context_id


def ensure_packages() -> None:
    subprocess.run([str(ROOT / "scripts/ensure-packages"), *PACKAGES], check=True)


def kiln_bin() -> Path:
    return Path(os.environ.get("BENCH_KILN") or ROOT / "target/release/kiln")


def build_kiln() -> None:
    if os.environ.get("BENCH_KILN"):
        log(f"using BENCH_KILN={os.environ['BENCH_KILN']} (no cargo build)")
        return
    log("building kiln (cargo build --release -p kiln-worker --bin kiln)")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "kiln-worker", "--bin", "kiln"],
                   cwd=ROOT, check=True)


def debian_rootfs(inputs: Path) -> Path:
    """debootstrap --variant=minbase bookworm, once (about a minute), kept in BENCH_DIR."""
    rootfs = inputs / "debian-rootfs"
    if (inputs / "debian-rootfs.done").exists():
        return rootfs
    log("debootstrap --variant=minbase bookworm (once; about a minute)")
    tmp = inputs / "debian-rootfs.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(rootfs, ignore_errors=True)
    with open(inputs / "debootstrap.log", "wb") as f:
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(tmp),
                        "http://deb.debian.org/debian"], stdout=f, stderr=subprocess.STDOUT,
                       check=True, timeout=900)
    tmp.rename(rootfs)
    (inputs / "debian-rootfs.done").touch()
    return rootfs


def pack_rootfs(rootfs: Path, tar_path: Path) -> None:
    """The rootfs as a tar, without device nodes, downloaded debs and apt lists."""
    skip = ("dev/", "var/cache/apt/archives/", "var/lib/apt/lists/")

    def keep(info: tarfile.TarInfo):
        name = info.name.removeprefix("./")
        if any(name.startswith(s) and name != s.rstrip("/") and not name.endswith("/lock")
               and not name.endswith("/partial") for s in skip):
            return None
        return info
    tmp = tar_path.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as t:
        t.add(str(rootfs), arcname=".", filter=keep)
    tmp.rename(tar_path)


def prepare_base(env: Env) -> None:
    """The base image, made by Kiln from a rootfs tar: an OCI layout for Kiln and a docker
    archive for dockerd and buildah. Debian minbase unless that cannot be had."""
    inputs = env.inputs
    inputs.mkdir(parents=True, exist_ok=True)
    base_ctx = inputs / f"base-{env.base_kind}-ctx"
    tar_path = base_ctx / "rootfs.tar"
    if not tar_path.exists():
        base_ctx.mkdir(exist_ok=True)
        if env.base_kind == "debian":
            try:
                rootfs = debian_rootfs(inputs)
            except (subprocess.SubprocessError, OSError) as e:
                log(f"debootstrap failed ({e}); falling back to the busybox base")
                env.base_kind = "busybox"
                env.base_note = (f"debootstrap failed ({e}; see {inputs / 'debootstrap.log'}): "
                                 "every workload ran on the busybox base, and the cold build's "
                                 "dpkg step copied busybox instead")
                return prepare_base(env)
            log("packing the Debian rootfs")
            pack_rootfs(rootfs, tar_path)
        else:
            log("making the busybox rootfs (tests/reference/base/mkrootfs.sh)")
            tree = inputs / "busybox-rootfs"
            shutil.rmtree(tree, ignore_errors=True)
            subprocess.run(["bash", str(ROOT / "tests/reference/base/mkrootfs.sh"), str(tree),
                            str(tar_path)], check=True, stdout=subprocess.DEVNULL)
            shutil.rmtree(tree, ignore_errors=True)
    done = inputs / f"base-{env.base_kind}.done"
    if done.exists() and env.base_docker_tar.exists() and env.base_layout.exists():
        return
    log(f"making {BASE_REF} ({env.base_kind}) with kiln: FROM scratch, ADD rootfs.tar /")
    shutil.rmtree(env.base_layout, ignore_errors=True)
    state = inputs / "base-state"
    shutil.rmtree(state, ignore_errors=True)
    with open(inputs / "base-build.log", "wb") as f:
        subprocess.run([str(kiln_bin()), "build", str(base_ctx), "-f",
                        str(WORKLOADS_DIR / "base/Dockerfile"), "--progress=plain",
                        "--cache-dir", str(state), "-t", BASE_REF,
                        "--output", f"type=oci,dest={env.base_layout}",
                        "--output", f"type=docker,dest={env.base_docker_tar}"],
                       stdout=f, stderr=subprocess.STDOUT, check=True)
    shutil.rmtree(state, ignore_errors=True)
    done.touch()


def prepare_contexts(env: Env, workloads: list[Workload]) -> None:
    """Generate each context once; again only when the sizes or the generator change."""
    for wl in workloads:
        cid = wl.context_id(env.sizes)
        ctx = env.ctx(cid)
        stamp = env.inputs / "ctx" / f"{cid}.done"
        if stamp.exists() and ctx.exists():
            continue
        log(f"generating the {cid} context")
        shutil.rmtree(ctx, ignore_errors=True)
        ctx.mkdir(parents=True)
        wl.generate(ctx, env.inputs, env.sizes)
        stamp.touch()


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix) or point == prefix.rstrip("/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Remove a work directory, first unmounting whatever a peer left mounted in it."""
    if not path.exists():
        return
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def stop_stale_dockerd(env: Env) -> None:
    """A dockerd that an earlier run started and could not stop (it was killed with SIGKILL)."""
    pidfile = env.work / "buildkit" / "pid"
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if cmdline and cmdline[0].endswith(b"dockerd") and str(env.work).encode() in b" ".join(cmdline):
        log(f"stopping the dockerd an earlier run left behind (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class Cell:
    times: list[float] = field(default_factory=list)
    peaks_kb: list[int] = field(default_factory=list)
    steps: list[Steps] = field(default_factory=list)
    details: list[dict] = field(default_factory=list)
    error: str | None = None
    flags: list[str] = field(default_factory=list)  # failed correctness checks

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None


def check_run(wl: Workload, peer: str, t: Timed, ctx_log: Path) -> list[str]:
    """The correctness checks of one timed run; each problem is a sentence."""
    problems = []
    s = t.steps
    if s is None:
        return problems
    if wl.name == "noop" and s.ran:
        problems.append(f"noop: {TITLES[peer]} ran steps on an unchanged rebuild: "
                        + "; ".join(s.ran))
    if wl.name == "noop" and not s.cached and peer != "buildah":
        problems.append(f"noop: no CACHED step in {TITLES[peer]}'s output")
    if wl.name in ("incremental", "incpush"):
        expected = [x for x in s.ran + s.cached if any(e in x for e in INCREMENTAL_EXPECTED)]
        extra = [x for x in s.ran if x not in expected]
        missing = [x for x in expected if x not in s.ran]
        if extra:
            problems.append(f"incremental: {TITLES[peer]} also reran " + "; ".join(extra))
        if missing:
            problems.append(f"incremental: {TITLES[peer]} did not rerun " + "; ".join(missing))
    if wl.name == "cachemount" and "BENCH: CACHE EMPTY" in ctx_log.read_text(errors="replace"):
        problems.append(f"cachemount: {TITLES[peer]} found its cache mount empty and refilled it")
    return problems


def run_workload(wl: Workload, peers: list[Peer], env: Env) -> dict[str, Cell]:
    ctx = env.ctx(wl.context_id(env.sizes))
    base_args = wl.args(env.sizes)
    cells = {p.name: Cell() for p in peers}
    live = [p for p in peers if p.started]
    for p in peers:
        if not p.started:
            cells[p.name].error = p.start_error

    def attempt(p: Peer, what: Callable[[], Timed | None]) -> tuple[bool, Timed | None]:
        try:
            return True, what()
        except Failed as e:
            cells[p.name].error = str(e)
            log(f"{wl.name}: {p.name} failed: {e}")
            live.remove(p)
            return False, None

    if wl.source == "cold":
        write_main(ctx)
    if wl.push:
        env.registry.start(fresh=True)
    phys = Physical(wl, ctx, env) if wl.physical else None
    try:
        run_rounds(wl, ctx, base_args, cells, live, attempt, env, phys)
    finally:
        if wl.push:
            env.registry.stop()
        if phys is not None:
            phys.cleanup()
    return cells


def run_rounds(wl: Workload, ctx: Path, base_args: dict, cells: dict[str, Cell],
               live: list[Peer], attempt, env: Env, phys: "Physical | None") -> None:
    if wl.setup_args is not None:
        for p in list(live):
            log(f"{wl.name}: untimed first build with {p.name}")
            args = {**base_args, **wl.setup_args}
            attempt(p, lambda p=p: p.build(wl, ctx, wl.dockerfile, args, f"{wl.name}-setup"))
    for r in range(env.runs):
        args = {**base_args, **(wl.setup_args or {})}
        if wl.vary:
            args.update(wl.vary(ctx))
        for p in list(live):
            if wl.cold:
                ok, _ = attempt(p, lambda p=p: p.reset(wl))
                if not ok:
                    continue
                if wl.push:
                    env.registry.start(fresh=True)
            label = f"{wl.name}-{r + 1}"
            ok, t = attempt(p, lambda p=p: p.build(wl, ctx, wl.dockerfile, args, label))
            if not ok:
                continue
            c = cells[p.name]
            c.times.append(t.seconds)
            if t.peak_kb is not None:
                c.peaks_kb.append(t.peak_kb)
            if t.steps is not None:
                c.steps.append(t.steps)
            c.details.append(t.detail)
            problems = check_run(wl, p.name, t, p.logfile(label))
            if not p.has_image(wl):
                problems.append(f"{wl.name}: {TITLES[p.name]} left no image {p.tag(wl)}")
            for problem in problems:
                if problem not in c.flags:
                    c.flags.append(problem)
                log(f"CHECK FAILED: {problem}")
            ran = f", {len(t.steps.ran)} ran / {len(t.steps.cached)} cached" if t.steps else ""
            log(f"{wl.name} {r + 1}/{env.runs} {p.name}: {t.seconds:.2f} s, "
                f"{(t.peak_kb or 0) / 1024:.0f} MB{ran}")
        if phys is not None:
            try:
                cells.setdefault(PHYSICAL, Cell()).times.append(phys.measure(args, r))
            except (Failed, subprocess.SubprocessError, OSError) as e:
                cells.setdefault(PHYSICAL, Cell()).error = str(e)
                log(f"{wl.name}: the physical reference failed: {e}")


PHYSICAL = "physical"


def dockerfile_runs(dockerfile: Path) -> list[str]:
    """The shell form RUN commands of a Dockerfile, in order, continuation lines joined."""
    runs, current = [], None
    for line in dockerfile.read_text().splitlines():
        if current is None:
            if not line.startswith("RUN "):
                continue
            current = line[4:]
        else:
            current += " " + line
        if current.endswith("\\"):
            current = current[:-1]
            continue
        runs.append(current)
        current = None
    return runs


class Physical:
    """The cost of a workload's work outside any builder, timed once per round:
    - copy: `cp -a` of the context to the same filesystem;
    - run: the RUN commands run directly, by chroot into a copy of the base rootfs made untimed
      (the context's debs/ and src/ in place), with the build args in the environment;
    - push: those RUN commands (for a rebuild: only the ones it reruns), plus `skopeo copy` of
      the image (built by Kiln to an OCI layout, untimed) to the workload's registry: empty for
      a cold workload, holding the previous image for a rebuild."""

    def __init__(self, wl: Workload, ctx: Path, env: Env):
        self.wl, self.ctx, self.env = wl, ctx, env
        # Under a chattr +T directory, as the `cp -a` copies (see physical_copy).
        self.root = spread_dir(env) / "root"
        self.layout = env.work / "physical-layout"
        self.state = env.work / "physical-state"
        self.runs = dockerfile_runs(wl.dockerfile)
        if not wl.cold:
            self.runs = [r for r in self.runs if any(e in r for e in INCREMENTAL_EXPECTED)]
        self.prepared = False

    def prepare_root(self) -> None:
        remove_tree(self.root)
        if self.env.base_kind == "debian":
            run(["cp", "-a", str(debian_rootfs(self.env.inputs)), str(self.root)])
        else:
            self.root.mkdir(parents=True)
            tar = self.env.inputs / f"base-{self.env.base_kind}-ctx" / "rootfs.tar"
            run(["tar", "-xf", str(tar), "-C", str(self.root)])
        dev = self.root / "dev"
        dev.mkdir(exist_ok=True)
        for name, minor in (("null", 3), ("zero", 5), ("urandom", 9)):
            if not (dev / name).exists():
                os.mknod(dev / name, 0o20666, os.makedev(1, minor))
        (self.root / "app").mkdir(exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        os.chmod(self.root / "tmp", 0o1777)
        for sub in ("debs", "src"):
            if (self.ctx / sub).is_dir():
                dest = self.root / ("tmp/debs" if sub == "debs" else "src")
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(self.ctx / sub, dest)

    def run_steps(self, args: dict) -> float:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **args}
        os.sync()
        start = time.monotonic()
        for script in self.runs:
            p = subprocess.run(["chroot", str(self.root), "/bin/sh", "-c", script], env=env,
                               capture_output=True, text=True, timeout=BUILD_TIMEOUT)
            if p.returncode != 0:
                raise Failed(f"chroot RUN exit {p.returncode}: {p.stderr.strip()[-200:]}")
        return time.monotonic() - start

    def push(self, args: dict) -> float:
        """skopeo copy of the image Kiln builds from the context now."""
        remove_tree(self.layout)
        cmd = [str(kiln_bin()), "build", str(self.ctx), "-f", str(self.wl.dockerfile),
               "--progress=plain", "--cache-dir", str(self.state),
               "--build-context", f"{BASE_REF}=oci-layout://{self.env.base_layout}",
               "--output", f"type=oci,dest={self.layout}"]
        for k, v in args.items():
            cmd += ["--build-arg", f"{k}={v}"]
        run(cmd, log_to=self.env.logs / f"{self.wl.name}-physical.log")
        if self.wl.cold:
            self.env.registry.start(fresh=True)
        dest = f"docker://{self.env.registry.addr}/kiln-bench/{self.wl.name}-physical:latest"
        os.sync()
        start = time.monotonic()
        run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{self.layout}",
             dest], log_to=self.env.logs / f"{self.wl.name}-physical.log")
        return time.monotonic() - start

    def measure(self, args: dict, round_: int) -> float:
        if self.wl.physical == PHYSICAL_COPY:
            return physical_copy(self.ctx, self.env)
        if self.wl.cold or not self.prepared:
            # A fresh root each cold round, the old ones kept until the workload ends: deleting
            # the last round's files right before would slow this round's file creation (ext4
            # without a journal, see bench/results/profiles.md).
            self.root = spread_dir(self.env) / f"root-{round_}"
            self.prepare_root()
            if not self.wl.cold:
                # A rebuild: the untimed first run of everything, and the first push.
                full = Physical(replace_cold(self.wl), self.ctx, self.env)
                full.root = self.root
                full.run_steps(args)
                self.push(args)
            self.prepared = True
        elif (self.ctx / "src").is_dir():
            shutil.rmtree(self.root / "src", ignore_errors=True)
            shutil.copytree(self.ctx / "src", self.root / "src")
        seconds = self.run_steps(args)
        if self.wl.physical == PHYSICAL_PUSH:
            seconds += self.push(args)
        return seconds

    def cleanup(self) -> None:
        for root in spread_dir(self.env).glob("root-*"):
            remove_tree(root)


def replace_cold(wl: Workload) -> Workload:
    from dataclasses import replace
    return replace(wl, cold=True)


class Registry:
    """Debian's docker-registry on a free loopback port, storage on disk under BENCH_DIR."""

    def __init__(self, env: Env):
        self.dir = env.work / "registry"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, fresh: bool) -> None:
        """(Re)start it; `fresh` empties its storage first, so that every byte moves."""
        self.stop()
        if fresh:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = int(run([str(ROOT / "scripts/free-port")]).stdout.strip())
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'storage'}\n"
            f"http:\n  addr: {self.addr}\n")
        with open(self.dir / "log", "ab") as f:
            self.proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=f,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise Failed(f"the registry did not start (see {self.dir / 'log'})")
            time.sleep(0.1)

    def answers(self) -> bool:
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://{self.addr}/v2/", timeout=1):
                return True
        except OSError:
            return False

    def has(self, ref: str) -> bool:
        """Whether `ADDR/REPO:TAG` has a manifest."""
        import urllib.request
        repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
        req = urllib.request.Request(f"http://{self.addr}/v2/{repo}/manifests/{tag}", method="HEAD",
                                     headers={"Accept": ", ".join([
                                         "application/vnd.oci.image.manifest.v1+json",
                                         "application/vnd.oci.image.index.v1+json",
                                         "application/vnd.docker.distribution.manifest.v2+json",
                                         "application/vnd.docker.distribution.manifest.list.v2+json"])})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def spread_dir(env: Env) -> Path:
    """A work directory whose subdirectories ext4 spreads across block groups (`chattr +T`)."""
    spread = env.work / "physical"
    if not spread.exists():
        spread.mkdir(parents=True)
        subprocess.run(["chattr", "+T", str(spread)], capture_output=True)
    return spread


def physical_copy(ctx: Path, env: Env) -> float:
    """The cost of the files themselves: `cp -a` of the context on the same filesystem. The
    copy goes into a directory with ext4's FS_TOPDIR_FL (`chattr +T`), as Kiln's store does, so
    that it is not slowed by being placed beside the inodes of the last copy, just deleted (see
    bench/results/profiles.md)."""
    dest = spread_dir(env) / "copy"
    shutil.rmtree(dest, ignore_errors=True)
    os.sync()
    start = time.monotonic()
    subprocess.run(["cp", "-a", str(ctx), str(dest)], check=True)
    elapsed = time.monotonic() - start
    shutil.rmtree(dest, ignore_errors=True)
    return elapsed


# ---------------------------------------------------------------------------------------------
# Reporting


def fmt_s(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def cell_text(c: Cell | None) -> str:
    if c is None:
        return "not run"
    err = (c.error or "").replace("|", "\\|")
    if c.error and not c.times:
        return "failed: " + err
    text = fmt_s(c.median)
    if c.flags:
        text += " ⚠"
    if c.error:
        text += f" (then failed: {err})"
    return text


def peak_text(c: Cell | None) -> str:
    if c is None or not c.peaks_kb:
        return "—"
    return f"{max(c.peaks_kb) / 1024:.0f}"


def steps_text(c: Cell | None) -> str:
    if c is None or not c.steps:
        return "—"
    each = [f"{len(s.ran)}/{len(s.ran) + len(s.cached)}" for s in c.steps]
    return f"{each[0]} ×{len(each)}" if len(set(each)) == 1 else ", ".join(each)


CHECKS = {"noop": "noop: every step CACHED in the plain output",
          "incremental": "incremental: exactly the steps that read src/ (and those after them "
                         "in the final stage) reran",
          "cachemount": "cachemount: the cache mount was found full"}

MEASURED = [
    "**Kiln**: `kiln build --progress=plain --output type=oci,dest=DIR` from process start to "
    "exit, base image from `--build-context kiln-bench/base:1=oci-layout://…`; this includes "
    "gzip-compressing new layers and writing the OCI layout. Cold runs use a fresh `--cache-dir` "
    "into which the base was imported by an untimed `RUN true` build; cached workloads keep one "
    "state directory and write into the existing layout.",
    "**BuildKit**: `DOCKER_BUILDKIT=1 docker build --network none -t …` against a private "
    "dockerd 20.10 (client wall clock, context upload included); the export goes to dockerd's "
    "image store (uncompressed overlay2 layers, no gzip). Cold runs follow `docker image rm` "
    "and `docker builder prune -af`; the base image stays loaded. Memory: the VmHWM of dockerd "
    "plus its containerd over the run.",
    "**buildah**: `buildah bud --layers --runtime runc --isolation oci --network none` with "
    "private `--root/--runroot` (overlay); the image is committed to containers-storage "
    "(uncompressed). Cold runs follow `buildah rm -a` and `buildah rmi` of every image but the "
    "base. Memory: max RSS of the largest process (GNU time).",
    "Kiln's memory is the max RSS of the largest process in its tree (GNU time `%M`), RUN "
    "commands included. Kiln CPU s: the median user + system CPU seconds of its whole process "
    "tree (GNU time `%U` + `%S`), RUN commands included: steadier than wall clock on a shared "
    "machine.",
    "physical s, timed once per round: for the COPY workloads `cp -a` of the context to the "
    "same filesystem (the cost of the files themselves on this disk); for smallrun the RUN "
    "command run directly (chroot into a copy of the base rootfs); for coldpush and incpush "
    "the RUN commands the build runs (all of them, or the two a one-file change reruns) run "
    "directly, plus `skopeo copy` of the image from an OCI layout to the same registry (empty "
    "for coldpush, holding the previous image for incpush).",
    "coldpush and incpush: every peer's time is its build plus its push (`kiln build --push`; "
    "`docker build` then `docker push`; `buildah bud` then `buildah push`, which compresses "
    "the uncompressed layers with gzip) to Debian's docker-registry on loopback, emptied before "
    "each cold run.",
    "Steps column: steps that ran / steps in the build, per run, read from each builder's "
    "plain output (FROM lines not counted; buildah counts only non-config steps).",
]


def report(env: Env, peers: list[str], results: dict, machine: dict,
           registry_table: str | None) -> tuple[str, dict]:
    head = ["workload"] + [f"{TITLES[p]} s" for p in peers]
    both = "kiln" in peers and "buildkit" in peers
    if both:
        head.append("Kiln / BuildKit")
    head += ["physical s", "Kiln / physical", "Kiln target s (PERFORMANCE.md)", "PERFORMANCE.md BuildKit / buildah s"]
    if "kiln" in peers:
        head.append("Kiln CPU s")
    head += [{"kiln": "Kiln peak MB", "buildkit": "dockerd+containerd peak MB",
              "buildah": "buildah peak MB"}[p] for p in peers]
    rows, flags = [], []
    for wl in WORKLOADS:
        if wl.name not in results:
            continue
        cells = results[wl.name]
        row = [wl.name] + [cell_text(cells.get(p)) for p in peers]
        if both:
            k, b = cells["kiln"].median, cells["buildkit"].median
            row.append(f"{k / b:.2f}" if k is not None and b else "—")
        phys = cells.get(PHYSICAL) or cells.get("cp -a")
        kiln = cells.get("kiln")
        row += [cell_text(phys) if phys else "—",
                f"{kiln.median / phys.median:.2f}" if phys and kiln and kiln.median is not None
                and phys.median else "—",
                wl.perf[2], f"{wl.perf[0]} / {wl.perf[1]}"]
        if "kiln" in peers:
            cpu = [d.get("cpu_s") for d in (cells["kiln"].details if "kiln" in cells else [])]
            cpu = [c for c in cpu if c is not None]
            row.append(fmt_s(statistics.median(cpu)) if cpu else "—")
        row += [peak_text(cells.get(p)) for p in peers]
        rows.append(row)
        for p in peers:
            flags += cells[p].flags if p in cells else []
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table += ["| " + " | ".join(r) + " |" for r in rows]

    s = env.sizes
    workloads = ["| workload | what | steps ran/total per run: " + " / ".join(
        TITLES[p] for p in peers) + " |", "|---|---|---|"]
    for wl in WORKLOADS:
        if wl.name in results:
            cells = results[wl.name]
            workloads.append(f"| {wl.name} | {wl.summary.format(**s.__dict__)} | "
                             + " / ".join(steps_text(cells.get(p)) for p in peers) + " |")
    runs_table = ["| workload | peer | runs (s) | spread: (max − min) / median |",
                  "|---|---|---|---|"]
    for name, cells in results.items():
        for p, c in cells.items():
            spread = (f"{(max(c.times) - min(c.times)) / c.median:.0%}"
                      if len(c.times) > 1 and c.median else "—")
            runs_table.append(f"| {name} | {TITLES.get(p, p)} | "
                              f"{', '.join(f'{t:.3f}' for t in c.times) or '—'} | {spread} |")
    md = [f"# make bench: {machine['date']}", "",
          f"Median wall clock of {env.runs} alternating runs (Kiln, BuildKit, buildah, Kiln, …), "
          "in seconds; peak memory in MB. ⚠ marks a failed correctness check (listed below).",
          ""]
    if machine.get("note"):
        md += [f"**Note:** {machine['note']}", ""]
    md += [*table, ""]
    checks = ["every image was produced"] + [c for name, c in CHECKS.items() if name in results]
    md += ["Correctness checks (" + "; ".join(checks) + "): "
           + ("all passed." if not flags else "")]
    md += [f"- ⚠ {f}" for f in flags] + [""]
    md += ["## Workloads", "", *workloads, "", f"Base image: {env.base_kind}"
           + (" (Debian bookworm minbase from debootstrap)" if env.base_kind == "debian" else
              " (Debian's static busybox)") + ".", ""]
    if env.base_note:
        md += [f"**Base:** {env.base_note}.", ""]
    md += ["## What is measured", ""] + [f"- {m}" for m in MEASURED] + [""]
    if registry_table:
        md += ["## Registry push and pull (scripts/bench)", "", registry_table.strip(), ""]
    md += ["## Every run", "", *runs_table, "", "## Machine", ""]
    md += [f"- {k}: {v}" for k, v in machine.items() if k != "note"] + [""]
    raw = {
        "machine": machine,
        "runs": env.runs,
        "peers": peers,
        "base": env.base_kind,
        "base_note": env.base_note,
        "sizes": s.__dict__,
        "workloads": {
            name: {p: {"times_s": c.times, "median_s": c.median, "peak_kb": c.peaks_kb,
                       "steps": [st.as_dict() for st in c.steps], "details": c.details,
                       "error": c.error, "check_failures": c.flags}
                   for p, c in cells.items()}
            for name, cells in results.items()
        },
        "performance_md": {wl.name: {"buildkit_s": wl.perf[0], "buildah_s": wl.perf[1],
                                     "kiln_target_s": wl.perf[2]} for wl in WORKLOADS},
        "registry_table": registry_table,
    }
    return "\n".join(md), raw


def machine_info(peers: list[Peer]) -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in
                Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")),
               "")
    mem = next((int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal:")), 0)
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": f"{mem / 1048576:.1f} GiB",
        "kernel": platform.release(),
        "debian": Path("/etc/debian_version").read_text().strip()
        if Path("/etc/debian_version").exists() else platform.platform(),
        "load average at start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }
    for p in peers:
        try:
            info[p.name] = p.version()
        except (OSError, Failed) as e:
            info[p.name] = f"? ({e})"
    note = os.environ.get("BENCH_NOTE", "").strip()
    if note:
        info["note"] = note
    return info


def run_registry_bench(env: Env) -> tuple[int, str | None]:
    """scripts/bench in its own directory under BENCH_DIR (it empties its BENCH_DIR)."""
    log("registry push/pull against skopeo (scripts/bench)")
    renv = dict(os.environ, BENCH_DIR=str(env.dir / "registry"),
                BENCH_SIZES=os.environ.get("BENCH_SIZES", "200"))
    p = subprocess.run([str(ROOT / "scripts/bench")], cwd=ROOT, env=renv,
                       stdout=subprocess.PIPE, text=True)
    print(p.stdout, end="", flush=True)
    table = [ln for ln in p.stdout.splitlines() if ln.startswith("|")]
    title = [ln for ln in p.stdout.splitlines() if ln.startswith("Registry")]
    table = title + [""] + table
    if p.returncode != 0:
        return p.returncode, f"scripts/bench failed with exit {p.returncode}"
    if not env.keep:
        shutil.rmtree(env.dir / "registry", ignore_errors=True)
    return 0, "\n".join(table)


def render_saved() -> int:
    """`bench.py --render`: write latest.md again from latest.json (after a change to the
    report's format), without running anything."""
    raw = json.loads((RESULTS / "latest.json").read_text())
    env = Env(Path("."), raw["runs"], False, Sizes(**raw["sizes"]), raw["base"],
              raw.get("base_note", ""))
    results = {}
    for name, cells in raw["workloads"].items():
        results[name] = {p: Cell(times=c["times_s"], peaks_kb=c["peak_kb"],
                                 steps=[Steps(**st) for st in c["steps"]],
                                 details=c["details"], error=c["error"],
                                 flags=c["check_failures"]) for p, c in cells.items()}
    md, _ = report(env, raw["peers"], results, raw["machine"], raw.get("registry_table"))
    (RESULTS / "latest.md").write_text(md)
    print(md)
    return 0


def parse_list(var: str, allowed: list[str]) -> list[str] | None:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return None
    items = [x.strip() for x in raw.split(",") if x.strip()]
    unknown = [x for x in items if x not in allowed]
    if unknown:
        sys.exit(f"bench: {var}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return items


def main() -> int:
    if os.geteuid() != 0:
        sys.exit("bench: run as root (dockerd, buildah and overlay snapshots need it)")
    only = parse_list("BENCH_ONLY", NAMES)
    wanted = parse_list("BENCH_PEERS", ALL_PEERS) or ALL_PEERS
    peer_names = [p for p in ALL_PEERS if p in wanted]
    workloads = [wl for wl in WORKLOADS if only is None or wl.name in only]
    base_kind = os.environ.get("BENCH_BASE", "debian")
    if base_kind not in ("debian", "busybox"):
        sys.exit("bench: BENCH_BASE is debian or busybox")
    env = Env(Path(os.environ.get("BENCH_DIR", "/var/tmp/kiln-bench")),
              int(os.environ.get("BENCH_RUNS", "3")),
              os.environ.get("BENCH_KEEP", "") not in ("", "0"), Sizes.from_env(), base_kind)

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    peers: list[Peer] = []
    results: dict[str, dict[str, Cell]] = {}
    machine: dict = {}
    kiln_failed = False
    try:
        ensure_packages()
        build_kiln()
        stop_stale_dockerd(env)
        remove_tree(env.work)
        shutil.rmtree(env.logs, ignore_errors=True)
        env.work.mkdir(parents=True)
        env.logs.mkdir(parents=True)
        if any(wl.push for wl in workloads):
            env.registry = Registry(env)
        if workloads:
            prepare_base(env)
            prepare_contexts(env, workloads)
            for name in peer_names:
                peer = PEER_CLASSES[name](env)
                log(f"starting {name}")
                try:
                    peer.start()
                except (Failed, OSError, IndexError) as e:
                    peer.start_error = str(e) or type(e).__name__
                    peer.started = False
                    log(f"{name} failed to start: {peer.start_error}")
                    peer.stop()
                peers.append(peer)
        machine = machine_info(peers)
        for wl in workloads:
            log(f"workload {wl.name}: {wl.summary.format(**env.sizes.__dict__)}")
            results[wl.name] = run_workload(wl, peers, env)
            if "kiln" in results[wl.name] and results[wl.name]["kiln"].error:
                kiln_failed = True
    finally:
        if env.registry is not None:
            env.registry.stop()
        for p in peers:
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001 - the others must still be stopped
                log(f"stopping {p.name}: {e}")
        if not env.keep:
            remove_tree(env.work)
    registry_status, registry_table = 0, None
    if only is None or "registry" in only:
        registry_status, registry_table = run_registry_bench(env)
    machine["load average at end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    md, raw = report(env, peer_names, results, machine, registry_table)
    # Only a full run replaces the committed latest.*; a narrowed or quick one writes partial.*.
    full = (only is None and peer_names == ALL_PEERS and env.runs >= 3
            and os.environ.get("BENCH_QUICK", "") in ("", "0"))
    stem = "latest" if full else "partial"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(md)
    (RESULTS / f"{stem}.json").write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n")
    print()
    print(md)
    log(f"wrote {RESULTS / stem}.md and {stem}.json; logs in {env.logs}")
    return 1 if kiln_failed or registry_status else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--render"]:
        sys.exit(render_saved())
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        sys.exit(f"bench: interrupted ({e})")
