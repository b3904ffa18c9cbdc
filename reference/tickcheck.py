"""What the bot stores of a feed's ticks: the rules a tick must keep, and the reason it did not.

A feed is outside code (a broker's terminal, a recording, a user's own `Feed`), so the bot checks
every tick before it stores it. A tick that breaks a rule is rejected with the first reason of
REASONS it meets, never stored (SQLite would store NaN as NULL, which the NOT NULL quote columns
refuse, so one such tick failed its whole batch, and the bot, on every restart), and the ticks
before and after it are stored as if it had not come. Its key stays taken: `seq` counts it, so
the keys of the others do not depend on what was rejected, and a restart derives the same ones.

The rules (a tick is `TICK_DTYPE`, see reference.mt5sim):

- `time_msc` at least 0, and `time` its whole second (`time_msc // 1000`);
- `bid` and `ask` finite and above 0, and `ask` at least `bid` (a crossed quote is no quote);
- `last` and `volume_real` finite and at least 0 (0: no deal, as MetaTrader5 writes it);
- `volume` at most 2**63 - 1 (SQLite's largest integer);
- its key `(time_msc, seq)` after the symbol's last stored or accepted one: a key already
  seen is a duplicate, an earlier one time going backwards (the agent has folded that time into
  its bars already and would never see it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["REASONS", "Checked", "Rejected", "check_ticks"]

# Every reason, in the order the rules are tried: a tick is rejected for the first it breaks.
REASONS: tuple[str, ...] = (
    "time_negative",
    "time_mismatch",
    "bid_not_finite",
    "ask_not_finite",
    "bid_not_positive",
    "ask_not_positive",
    "ask_below_bid",
    "last_not_finite",
    "last_negative",
    "volume_real_not_finite",
    "volume_real_negative",
    "volume_too_large",
    "duplicate_key",
    "time_backwards",
)
_MAX_INTEGER = 2**63 - 1


@dataclass(frozen=True)
class Rejected:
    """One tick the bot did not store: its key, the rule it broke, and the values that did."""

    symbol: str
    time_msc: int
    seq: int
    reason: str
    detail: str


@dataclass(frozen=True)
class Checked:
    """A batch sorted into rows to store (the ticks table's column order) and rejected ticks."""

    rows: list[tuple[Any, ...]]
    rejected: list[Rejected]
    last_key: tuple[int, int] | None  # the last accepted key, or the one passed in

    def counts(self) -> Counter[str]:
        """Rejected ticks per reason."""
        return Counter(r.reason for r in self.rejected)


def _per_tick_reasons(ticks: npt.NDArray[Any]) -> list[tuple[str, npt.NDArray[np.bool_]]]:
    """(reason, mask of the ticks breaking it) for the rules about one tick's own values."""
    time_msc = ticks["time_msc"]
    bid, ask, last, real = ticks["bid"], ticks["ask"], ticks["last"], ticks["volume_real"]
    with np.errstate(invalid="ignore"):
        return [
            ("time_negative", time_msc < 0),
            ("time_mismatch", ticks["time"] != time_msc // 1000),
            ("bid_not_finite", ~np.isfinite(bid)),
            ("ask_not_finite", ~np.isfinite(ask)),
            ("bid_not_positive", ~(bid > 0)),
            ("ask_not_positive", ~(ask > 0)),
            ("ask_below_bid", ask < bid),
            ("last_not_finite", ~np.isfinite(last)),
            ("last_negative", last < 0),
            ("volume_real_not_finite", ~np.isfinite(real)),
            ("volume_real_negative", real < 0),
            ("volume_too_large", ticks["volume"].astype(np.uint64) > np.uint64(_MAX_INTEGER)),
        ]


def _detail(tick: np.void, reason: str) -> str:
    field = {
        "time_negative": "time_msc",
        "time_mismatch": "time",
        "ask_below_bid": "ask",
        "volume_too_large": "volume",
    }.get(reason, reason.split("_not_")[0].removesuffix("_negative"))
    if reason == "time_mismatch":
        return f"time={int(tick['time'])} but time_msc={int(tick['time_msc'])}"
    if reason == "ask_below_bid":
        return f"ask={float(tick['ask'])!r} < bid={float(tick['bid'])!r}"
    value = tick[field]
    shown = float(value) if value.dtype.kind == "f" else int(value)
    return f"{field}={shown!r}"


def check_ticks(
    symbol: str,
    ticks: npt.NDArray[Any],
    seq: npt.NDArray[Any],
    last_key: tuple[int, int] | None,
) -> Checked:
    """Sort one symbol's ticks (oldest first, with their `seq`) into rows and rejected ticks.

    `last_key` is the symbol's last stored or accepted key (None: none yet); each accepted tick
    moves it. Rows hold Python ints and floats, ready for `reference.tickstore.insert_ticks`.
    """
    rules = _per_tick_reasons(ticks)
    time_msc = ticks["time_msc"].tolist()
    seqs = seq.tolist()
    columns = [
        ticks["time"].tolist(),
        ticks["bid"].tolist(),
        ticks["ask"].tolist(),
        ticks["last"].tolist(),
        ticks["volume"].tolist(),
        ticks["flags"].tolist(),
        ticks["volume_real"].tolist(),
    ]
    if not any(bool(mask.any()) for _, mask in rules) and _increasing(ticks, seq, last_key):
        # The usual batch: every tick good, keys in order. One pass, as before the checks.
        good = list(zip([symbol] * len(time_msc), time_msc, seqs, *columns, strict=True))
        return Checked(good, [], (time_msc[-1], seqs[-1]) if good else last_key)
    bad = np.full(len(ticks), None, dtype=object)
    for rule, mask in reversed(rules):
        bad[mask] = rule  # reversed: the first rule a tick breaks is the one that stays
    rows: list[tuple[Any, ...]] = []
    rejected: list[Rejected] = []
    key = last_key
    broken: list[str | None] = bad.tolist()
    for i, reason in enumerate(broken):
        this: tuple[int, int] = (time_msc[i], seqs[i])
        if reason is None and key is not None and this <= key:
            reason = "duplicate_key" if this == key else "time_backwards"
        if reason is not None:
            if reason in ("duplicate_key", "time_backwards"):
                assert key is not None
                detail = f"key ({this[0]}, {this[1]}) is not after ({key[0]}, {key[1]})"
            else:
                detail = _detail(ticks[i], reason)
            rejected.append(Rejected(symbol, this[0], this[1], reason, detail))
            continue
        time, bid, ask, last, volume, flags, real = (c[i] for c in columns)
        rows.append((symbol, this[0], this[1], time, bid, ask, last, volume, flags, real))
        key = this
    return Checked(rows, rejected, key)


def _increasing(
    ticks: npt.NDArray[Any], seq: npt.NDArray[Any], last_key: tuple[int, int] | None
) -> bool:
    """Whether the keys strictly increase, from after `last_key` on."""
    if not len(ticks):
        return True
    t, s = ticks["time_msc"], seq.astype(np.int64)
    if last_key is not None and (int(t[0]), int(s[0])) <= last_key:
        return False
    steps = (t[1:] > t[:-1]) | ((t[1:] == t[:-1]) & (s[1:] > s[:-1]))
    return bool(np.all(steps))
