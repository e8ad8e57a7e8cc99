import re, statistics as st, collections
rows = collections.defaultdict(list)
for l in open("results/bench.txt"):
    kv = dict(re.findall(r"(\w+)=(\S+)", l))
    rows[(kv["design"], kv["mode"], int(kv["batch"]))].append(kv)
def ms(vals):
    vals = sorted(float(v) for v in vals)
    return f"{st.median(vals):,.0f} ({vals[0]:,.0f}–{vals[-1]:,.0f})" if vals[-1] >= 100 else f"{st.median(vals):.1f} ({vals[0]:.1f}–{vals[-1]:.1f})"
print("| design | fsync | batch | records/s median (min–max) | batches/s | batch p50 µs | batch p99 µs | threads after open / after run |")
print("|---|---|---|---|---|---|---|---|")
for k in sorted(rows, key=lambda k: (k[0], k[1] != "never", k[2])):
    r = rows[k]
    print(f"| {k[0]} | {k[1]} | {k[2]} | {ms([x['recs_per_s'] for x in r])} | {ms([x['batches_per_s'] for x in r])} | "
          f"{ms([x['p50_us'] for x in r])} | {ms([x['p99_us'] for x in r])} | {r[0]['after_open']} / {r[0]['after_run']} |")
print()
rec = collections.defaultdict(list)
for l in open("results/recovery.txt"):
    if "recover design=" in l:
        kv = dict(re.findall(r"(\w+)=(\S+)", l))
        tag = ("flushed " if l.startswith("flushed") else "") + kv["design"] + (" cold" if kv["cold"] == "true" else " warm")
        rec[tag].append(kv)
print("| recovery of 1M records | secs median (min–max) | records | disk bytes | bytes/record |")
print("|---|---|---|---|---|")
for t, r in rec.items():
    s = sorted(float(x["secs"]) for x in r)
    print(f"| {t} | {st.median(s):.3f} ({s[0]:.3f}–{s[-1]:.3f}) | {r[0]['n']} | {r[0]['disk_bytes']} | {r[0]['bytes_per_rec']} |")
