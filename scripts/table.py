"""The result tables of the side-by-side scripts (acl.sh, auth.sh, tls.sh).

Each script's Python heredoc imports this module (the scripts directory is
put on sys.path) and gives it the run directory, the measurements, the
brokers and a function from one run's JSON report to its table rows.
"""
import json
import os

NAMES = {"ringmq": "ringmq", "mosquitto": "Mosquitto"}


def load(tmp, test, broker):
    """The JSON report of one run ({"error": ...} when there is none),
    with "died" set when the broker exited during it."""
    base = os.path.join(tmp, f"{test}.{broker}")
    try:
        with open(base + ".json") as f:
            r = json.load(f)
    except Exception:
        r = {"error": "no result"}
    if os.path.exists(base + ".died"):
        r["died"] = True
    return r


def num(r, key, fmt):
    """r[key] formatted with fmt, or n/a."""
    v = r.get(key)
    if isinstance(v, (int, float)):
        return fmt.format(v)
    return "n/a" if v is None else str(v)


def ms(r, a, b):
    """Two microsecond figures as 'a / b' in milliseconds."""
    x, y = r.get(a), r.get(b)
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        return f"{x / 1000:.2f} / {y / 1000:.2f}"
    return "n/a"


def print_table(tmp, tests, brokers, rows_of, notes_of=None):
    """Prints one markdown row per (measurement, label) with a column per
    broker. rows_of(test, report) gives [(label, cell)] (called with {}
    for the labels when no broker has a report); notes_of(test, report)
    gives extra notes for one report. Returns the notes (errors, deaths,
    extras) for the caller to print after its own text."""
    print("| measurement | " + " | ".join(NAMES[b] for b in brokers) + " |")
    print("|---|" + "---:|" * len(brokers))
    notes = []
    for t in tests:
        labels, cols = None, {}
        for b in brokers:
            r = load(tmp, t, b)
            if "error" in r:
                cols[b] = None
                notes.append(f"{t} / {NAMES[b]}: {r['error']}")
            else:
                rows = rows_of(t, r)
                labels = [label for label, _ in rows]
                cols[b] = [v for _, v in rows]
                for n in (notes_of(t, r) if notes_of else []):
                    notes.append(f"{t} / {NAMES[b]}: {n}")
            if r.get("died"):
                notes.append(f"{t} / {NAMES[b]}: the broker DIED during the run")
        if labels is None:
            labels = [label for label, _ in rows_of(t, {})]
        for i, label in enumerate(labels):
            cells = [(c[i] if c else "n/a") for c in (cols[b] for b in brokers)]
            print(f"| {label} | " + " | ".join(cells) + " |")
    return notes


def kv(path):
    """The `key=value` lines of a file as a dict (empty when it is missing)."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                k, sep, v = line.rstrip("\n").partition("=")
                if sep:
                    out[k] = v
    except OSError:
        pass
    return out
