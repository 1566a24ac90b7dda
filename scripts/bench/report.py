#!/usr/bin/env python3
"""Merges the per-run JSON files of scripts/bench.sh into results.json, draws the charts
(relay.png, idle.png, storm.png, fanout.png) and prints the ratio tables as Markdown.

    report.py RUNS_DIR OUT_DIR [--total-seconds N] [--peer-version V] [--matchbox-version V]

Only the standard library and matplotlib (installed by bench.sh into a venv).
"""

import argparse
import glob
import json
import os
import platform
import statistics
import subprocess
import time

TARGETS = ["signal-manager", "floor", "peerjs", "matchbox"]
# signal-manager with server.read_buffer_size = write_buffer_size = 1024 (the config minimum).
IDLE_VARIANT = "signal-manager-buf1k"
COLORS = {"signal-manager": "#1f77b4", "signal-manager-buf1k": "#6baed6", "floor": "#7f7f7f", "peerjs": "#d62728",
          "matchbox": "#2ca02c", "floor-broadcast": "#bcbcbc"}


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001 - best effort machine description
        return ""


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "mem_total": mem,
        "kernel": platform.release(),
        "nofile_limit": sh("ulimit -n"),
        "ip_local_port_range": sh("cat /proc/sys/net/ipv4/ip_local_port_range"),
        "rustc": sh("rustc --version"),
        "node": sh("node --version"),
        "git_commit": sh("git -C '%s' rev-parse --short HEAD" % os.path.dirname(os.path.abspath(__file__))),
    }


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def med(d):
    return d["median"] if d else None


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def fmt(v, digits=0):
    if v is None:
        return "n/a"
    if isinstance(v, float) and digits == 0 and abs(v) < 10:
        return f"{v:.2f}"
    return f"{v:,.{digits}f}"


def fx(v):
    return "n/a" if v is None else f"{v:.2f}×"


def load(runs_dir):
    runs = []
    for p in sorted(glob.glob(os.path.join(runs_dir, "*.json"))):
        with open(p) as f:
            try:
                runs.append(json.load(f))
            except json.JSONDecodeError:
                continue
    return runs


def by_label(runs, prefix):
    return [r for r in runs if (r.get("label") or "").startswith(prefix)]


def exact(runs, label):
    return [r for r in runs if r.get("label") == label]


def summarize(runs):
    s = {}
    # Relay at saturation, several rounds.
    rs = {}
    for t in TARGETS:
        rr = by_label(runs, f"relay-sat-{t}-r")
        if not rr:
            continue
        rs[t] = {
            "rounds": len(rr),
            "msgs_per_s": spread([r["throughput_per_s"] for r in rr]),
            "msgs_per_server_cpu_s": spread([r["server"]["work_per_cpu_s"] for r in rr]),
            "server_cpu_fraction": spread([r["server"]["cpu_s"] / r["duration_s"] for r in rr if r["server"]["cpu_s"] is not None]),
            "generator_cpu_fraction": spread([r["generator_cpu_s"] / r["duration_s"] for r in rr]),
            "p50_us": spread([r["latency"].get("p50_us") for r in rr]),
            "p99_us": spread([r["latency"].get("p99_us") for r in rr]),
            "p999_us": spread([r["latency"].get("p999_us") for r in rr]),
            "errors": sum(r["errors"] for r in rr),
            "lost": sum(r["lost"] for r in rr),
        }
    s["relay_saturation"] = rs
    # Relay at a fixed offered load.
    rf = {}
    for t in TARGETS:
        rr = exact(runs, f"relay-rate-{t}")
        if not rr:
            continue
        r = rr[0]
        rf[t] = {
            "offered_per_s": r["params"]["rate"],
            "msgs_per_s": r["throughput_per_s"],
            "msgs_per_server_cpu_s": r["server"]["work_per_cpu_s"],
            "server_cpu_fraction": (r["server"]["cpu_s"] or 0) / r["duration_s"],
            "latency": r["latency"],
            "errors": r["errors"],
            "lost": r["lost"],
        }
    s["relay_rate"] = rf
    # Idle.
    idle = {}
    for t in TARGETS + [IDLE_VARIANT]:
        rr = exact(runs, f"idle-{t}")
        if not rr:
            continue
        r = rr[0]
        idle[t] = {
            "connections": r["connections"],
            "connects_per_s": r["connects_per_s"],
            "connects_per_server_cpu_s": r["server"]["connects_per_cpu_s"],
            "rss_per_conn_bytes": r["server"]["rss_per_conn_bytes"],
            "rss_held_kib": r["server"]["rss_held_kib"],
            "idle_cpu_fraction": r["server"]["idle_cpu_fraction"],
            "kernel_slab_per_conn_bytes": r["kernel_slab_per_conn_bytes"],
            "handshake_p99_us": r["handshake"].get("p99_us"),
        }
    s["idle"] = idle
    # Storms.
    storm = {}
    for r in by_label(runs, "storm-"):
        key = f'{r["target"]} m={r["params"]["room_size"]}'
        storm[key] = {
            "target": r["target"],
            "room_size": r["params"]["room_size"],
            "peers": r["params"]["peers"],
            "join_op": r["params"]["join_op"],
            "joins_per_s": r["joins_per_s"],
            "all_acked_s": r["all_acked_s"],
            "all_peer_joined_s": r["all_peer_joined_s"],
            "peer_joined_seen": r["peer_joined_seen"],
            "peer_joined_expected": r["peer_joined_expected"],
            "joins_per_server_cpu_s": r["server"]["work_per_cpu_s"],
            "join_p99_us": r["join_latency"].get("p99_us"),
            "errors": r["errors"],
        }
    s["storm"] = storm
    # Fan-out.
    fan = {}
    for r in by_label(runs, "fanout-"):
        key = r["label"].removeprefix("fanout-")
        fan[key] = {
            "target": r["target"],
            "rooms": r["params"]["rooms"],
            "room_size": r["params"]["room_size"],
            "sends_per_message": r["params"]["sends_per_message"],
            "deliveries_per_s": r["throughput_per_s"],
            "deliveries_per_server_cpu_s": r["server"]["work_per_cpu_s"],
            "latency": r["latency"],
            "errors": r["errors"],
        }
    s["fanout"] = fan
    return s


def ratios(s):
    out = {}
    rs = s.get("relay_saturation", {})
    sm = rs.get("signal-manager")
    if sm:
        for other in ["floor", "peerjs", "matchbox"]:
            o = rs.get(other)
            if not o:
                continue
            out[f"relay_msgs_per_server_cpu_s sm/{other}"] = ratio(med(sm["msgs_per_server_cpu_s"]), med(o["msgs_per_server_cpu_s"]))
            out[f"relay_msgs_per_s sm/{other}"] = ratio(med(sm["msgs_per_s"]), med(o["msgs_per_s"]))
    idle = s.get("idle", {})
    if "signal-manager" in idle:
        for other in ["floor", "peerjs", "matchbox"]:
            if other in idle:
                out[f"idle_rss_per_conn sm/{other}"] = ratio(idle["signal-manager"]["rss_per_conn_bytes"], idle[other]["rss_per_conn_bytes"])
                out[f"idle_connects_per_s sm/{other}"] = ratio(idle["signal-manager"]["connects_per_s"], idle[other]["connects_per_s"])
    fan = s.get("fanout", {})
    if "signal-manager" in fan:
        for other in ["floor", "matchbox", "floor-broadcast"]:
            if other in fan:
                out[f"fanout_deliveries_per_server_cpu_s sm/{other}"] = ratio(fan["signal-manager"]["deliveries_per_server_cpu_s"], fan[other]["deliveries_per_server_cpu_s"])
    st = s.get("storm", {})
    for m in (8, 50):
        a, b = st.get(f"signal-manager m={m}"), st.get(f"matchbox m={m}")
        if a and b:
            out[f"storm_joins_per_s m={m} sm/matchbox"] = ratio(a["joins_per_s"], b["joins_per_s"])
            out[f"storm_joins_per_server_cpu_s m={m} sm/matchbox"] = ratio(a["joins_per_server_cpu_s"], b["joins_per_server_cpu_s"])
    return out


def tables(s, r):
    lines = []
    rs = s.get("relay_saturation", {})
    if rs:
        fl = rs.get("floor")
        lines += ["### Relay at saturation (median of rounds, min–max)", "",
                  "| target | relayed msgs/s | msgs per server-CPU-s | vs floor | server CPU | generator CPU | p50 µs | p99 µs | p99.9 µs |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for t in TARGETS:
            x = rs.get(t)
            if not x:
                continue
            eff = x["msgs_per_server_cpu_s"]
            lines.append(
                f"| {t} | {fmt(med(x['msgs_per_s']))} ({fmt(x['msgs_per_s']['min'])}–{fmt(x['msgs_per_s']['max'])}) "
                f"| {fmt(med(eff))} ({fmt(eff['min'])}–{fmt(eff['max'])}) "
                f"| {fx(ratio(med(eff), med(fl['msgs_per_server_cpu_s']) if fl else None))} "
                f"| {med(x['server_cpu_fraction']) * 100:.0f}% | {med(x['generator_cpu_fraction']) * 100:.0f}% "
                f"| {fmt(med(x['p50_us']))} | {fmt(med(x['p99_us']))} | {fmt(med(x['p999_us']))} |")
        lines.append("")
    rf = s.get("relay_rate", {})
    if rf:
        lines += ["### Relay at a fixed offered load", "",
                  "| target | offered/s | delivered/s | server CPU | msgs per server-CPU-s | p50 µs | p99 µs | p99.9 µs | max µs |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for t in TARGETS:
            x = rf.get(t)
            if not x:
                continue
            lat = x["latency"]
            lines.append(f"| {t} | {fmt(x['offered_per_s'])} | {fmt(x['msgs_per_s'])} | {x['server_cpu_fraction'] * 100:.0f}% "
                         f"| {fmt(x['msgs_per_server_cpu_s'])} | {fmt(lat.get('p50_us'))} | {fmt(lat.get('p99_us'))} "
                         f"| {fmt(lat.get('p999_us'))} | {fmt(lat.get('max_us'))} |")
        lines.append("")
    idle = s.get("idle", {})
    if idle:
        lines += ["### Idle connections", "",
                  "| target | connections | connects/s | connects per server-CPU-s | server RSS per conn | kernel slab per conn (both ends) | idle server CPU |",
                  "|---|---|---|---|---|---|---|"]
        for t in TARGETS + [IDLE_VARIANT]:
            x = idle.get(t)
            if not x:
                continue
            rss = x["rss_per_conn_bytes"]
            slab = x["kernel_slab_per_conn_bytes"]
            lines.append(f"| {t} | {x['connections']:,.0f} | {fmt(x['connects_per_s'])} | {fmt(x['connects_per_server_cpu_s'])} "
                         f"| {rss / 1024:.1f} KiB | {slab / 1024:.1f} KiB | {(x['idle_cpu_fraction'] or 0) * 100:.1f}% |")
        lines.append("")
    st = s.get("storm", {})
    if st:
        lines += ["### Join storms", "",
                  "| target | room size | peers | joins/s | joins per server-CPU-s | all ACKed | all join events seen | join p99 |",
                  "|---|---|---|---|---|---|---|---|"]
        for k in sorted(st):
            x = st[k]
            lines.append(f"| {x['target']} | {x['room_size']} | {x['peers']} | {fmt(x['joins_per_s'])} | {fmt(x['joins_per_server_cpu_s'])} "
                         f"| {x['all_acked_s']:.3f} s | {x['all_peer_joined_s']:.3f} s ({x['peer_joined_seen']}/{x['peer_joined_expected']}) "
                         f"| {fmt((x['join_p99_us'] or 0) / 1000, 1)} ms |")
        lines.append("")
    fan = s.get("fanout", {})
    if fan:
        lines += ["### Fan-out (one sender per room)", "",
                  "| run | rooms × size | sends per message | deliveries/s | deliveries per server-CPU-s | p50 µs | p99 µs |",
                  "|---|---|---|---|---|---|---|"]
        for k in ["floor-broadcast", "floor", "signal-manager", "matchbox"]:
            x = fan.get(k)
            if not x:
                continue
            lines.append(f"| {k} | {x['rooms']} × {x['room_size']} | {x['sends_per_message']} | {fmt(x['deliveries_per_s'])} "
                         f"| {fmt(x['deliveries_per_server_cpu_s'])} | {fmt(x['latency'].get('p50_us'))} | {fmt(x['latency'].get('p99_us'))} |")
        lines.append("")
    if r:
        lines += ["### Ratios (signal-manager ÷ other)", "", "| ratio | value |", "|---|---|"]
        for k, v in r.items():
            lines.append(f"| {k} | {fx(v)} |")
        lines.append("")
    return "\n".join(lines)


def charts(s, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no charts")
        return

    def bars(ax, names, vals, lo=None, hi=None, title="", ylabel=""):
        colors = [COLORS.get(n, "#999999") for n in names]
        err = None
        if lo is not None:
            err = [[v - l for v, l in zip(vals, lo)], [h - v for v, h in zip(vals, hi)]]
        ax.bar(names, vals, color=colors, yerr=err, capsize=4)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        for i, v in enumerate(vals):
            ax.annotate(f"{v:,.0f}", (i, v), ha="center", va="bottom", fontsize=8)
        ax.tick_params(axis="x", labelrotation=15)

    rs = s.get("relay_saturation", {})
    rf = s.get("relay_rate", {})
    if rs:
        names = [t for t in TARGETS if t in rs]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
        e = [rs[t]["msgs_per_server_cpu_s"] for t in names]
        bars(axes[0], names, [x["median"] for x in e], [x["min"] for x in e], [x["max"] for x in e],
             "Relay: msgs per server-CPU-second\n(saturation, median of rounds, min–max)", "msgs / CPU-s")
        t_ = [rs[t]["msgs_per_s"] for t in names]
        bars(axes[1], names, [x["median"] for x in t_], [x["min"] for x in t_], [x["max"] for x in t_],
             "Relay: relayed msgs/s at saturation\n(server CPU 0, generator CPU 1)", "msgs/s")
        if rf:
            ln = [t for t in TARGETS if t in rf]
            import numpy as np
            x = np.arange(len(ln))
            w = 0.27
            for i, (q, lab) in enumerate([("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")]):
                vals = [(rf[t]["latency"].get(q) or 0) / 1000 for t in ln]
                axes[2].bar(x + (i - 1) * w, vals, w, label=lab)
            axes[2].set_xticks(x, ln, rotation=15)
            axes[2].set_ylabel("ms")
            offered = rf[ln[0]]["offered_per_s"]
            axes[2].set_title(f"Relay latency at {offered:,.0f} msgs/s offered\n(from intended send time)", fontsize=10)
            axes[2].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "relay.png"), dpi=110)
        plt.close(fig)
    idle = s.get("idle", {})
    if idle:
        names = [t for t in TARGETS + [IDLE_VARIANT] if t in idle]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        n = max(idle[t]["connections"] for t in names)
        bars(axes[0], names, [idle[t]["rss_per_conn_bytes"] / 1024 for t in names],
             title=f"Idle: server RSS per connection at {n:,.0f} connections", ylabel="KiB")
        axes[0].axhline(3, color="black", linestyle="--", linewidth=1)
        axes[0].annotate("target ≤ 3 KiB", (0, 3), xytext=(0, 4), textcoords="offset points", fontsize=8)
        bars(axes[1], names, [idle[t]["connects_per_s"] for t in names],
             title="Idle: connections established per second\n(WebSocket + hello/auth, 64 at a time)", ylabel="conn/s")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "idle.png"), dpi=110)
        plt.close(fig)
    st = s.get("storm", {})
    if st:
        keys = sorted(st)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        names = keys
        cols = [COLORS.get(st[k]["target"]) for k in keys]
        axes[0].bar(names, [st[k]["joins_per_s"] for k in keys], color=cols)
        axes[0].set_title("Join storm: joins/s", fontsize=10)
        axes[1].bar(names, [st[k]["all_peer_joined_s"] for k in keys], color=cols)
        axes[1].set_title("Join storm: seconds until every member saw every join", fontsize=10)
        for ax in axes:
            ax.tick_params(axis="x", labelrotation=15)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "storm.png"), dpi=110)
        plt.close(fig)
    fan = s.get("fanout", {})
    if fan:
        keys = [k for k in ["floor-broadcast", "floor", "signal-manager", "matchbox"] if k in fan]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        bars(axes[0], keys, [fan[k]["deliveries_per_server_cpu_s"] for k in keys],
             title="Fan-out: deliveries per server-CPU-second", ylabel="deliveries / CPU-s")
        bars(axes[1], keys, [fan[k]["deliveries_per_s"] for k in keys],
             title="Fan-out: deliveries/s", ylabel="deliveries/s")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "fanout.png"), dpi=110)
        plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs")
    ap.add_argument("out")
    ap.add_argument("--total-seconds", type=float)
    ap.add_argument("--peer-version")
    ap.add_argument("--matchbox-version")
    a = ap.parse_args()
    runs = load(a.runs)
    s = summarize(runs)
    r = ratios(s)
    os.makedirs(a.out, exist_ok=True)
    result = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "versions": {"peer": a.peer_version, "matchbox_server": a.matchbox_version},
        "bench_total_seconds": a.total_seconds,
        "summary": s,
        "ratios": r,
        "runs": runs,
    }
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1, sort_keys=False)
        f.write("\n")
    charts(s, a.out)
    print(tables(s, r))


if __name__ == "__main__":
    main()
