"""Simulator and injected scenarios behind :mod:`models.synthetic` (pure numpy).

:func:`simulate` draws one symbol's trades from the model documented in
:mod:`models.synthetic` (constants below). A scenario never writes ticks itself:
it edits a :class:`Modulation`, the per-second knobs of that process (trade rate,
added trade rate, volatility, an additive log-price path, taker-buy probability,
trade size, multi-fill "rush" orders, frozen-price stretches), so injected trades
have the same microstructure as normal ones and only the knobs give them away.

Parameters of each scenario (all floats; the defaults are drawn per injection,
"liquid" / "illiquid" where they differ). A ``rate_multiplier`` is the trade rate
during the event in units of the symbol's mean rate: the manipulators' trades are
added to normal trading, whatever its current level.

``pump_and_dump``
    ``peak_multiplier`` 1.1-1.5 / 1.1-3.5 (log-uniform), ``rise_s`` 60-300,
    ``dump_s`` 120-900, ``rate_multiplier`` 10-100 (log-uniform, front-loaded),
    ``retained`` 0-0.15 (share of the gain kept after the dump),
    ``pre_accumulation`` 0 or 1 (coin flip), ``pre_accumulation_s`` 3600-10800,
    ``pre_drift`` 0.01-0.05 (log-price drift over the accumulation),
    ``pre_rate_multiplier`` 1.3-2.0.
``flash_crash``
    ``drop`` 0.05-0.20, ``fall_s`` 3-60, ``recover_s`` 120-900,
    ``recovery_fraction`` 0.6-0.95, ``rate_multiplier`` 10-40.
``volume_spike_flat``
    ``rate_multiplier`` 10-50, ``size_multiplier`` 1.0-1.5, ``duration_s`` 120-900.
``stale_price``
    ``duration_s`` 600-1800 / 1800-5400.
``regime_shift``
    ``transition_s`` 2700-4500, ``vol_factor`` and ``volume_factor`` 1.5-3 or
    their inverse, ``drift_per_h`` +-0.002-0.01 (log-price per hour).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from models.synthetic import SymbolProfile

FloatArray = npt.NDArray[np.float64]

SCENARIOS: tuple[str, ...] = ("pump_and_dump", "flash_crash", "volume_spike_flat", "stale_price",
                              "regime_shift")  # fmt: skip

_T_DF = 5.0  # Student-t degrees of freedom of the per-second innovations
_GARCH_ALPHA, _GARCH_BETA = 0.04, 0.958
_OU = ((7200.0, 0.35), (90.0, 0.55))  # (time constant s, stationary sd) of the log-intensity factors
_Z_CAP, _VOL_CAP = 8.0, 4.0  # innovations clipped at 8 sd; GARCH sd saturates at 4x its mean
_VOL_COUPLING = 0.5  # return variance ~ activity (Clark 1973)
_SIDE_REPEAT = 0.3  # probability that an order repeats the previous taker side
_SIZE_SIGMA, _TAIL_P, _TAIL_ALPHA = 1.2, 0.05, 1.6
_SIZE_NORM = 1.0 + _TAIL_P * (_TAIL_ALPHA / (_TAIL_ALPHA - 1.0) - 1.0)


class Micro(NamedTuple):
    """Microstructure by liquidity (relative spreads and steps)."""

    vol_lo: float  # range of the daily volatility
    vol_hi: float
    half_spread: float
    multi: float  # share of orders filling 2-4 times in the same millisecond
    step: float  # book step between successive fills
    rush_step: float  # book step during pumps and crashes (thin book)


MICRO = {True: Micro(0.025, 0.05, 1e-5, 0.03, 2e-5, 5e-4), False: Micro(0.04, 0.10, 1e-3, 0.015, 5e-4, 3e-3)}
#: Extra fills (Poisson mean, on top of the normal 2-4) of a rush order.
RUSH_EXTRA_FILLS = 3.0

# Closed validity interval of every parameter, per scenario.
_SPECS: dict[str, dict[str, tuple[float, float]]] = {
    "pump_and_dump": {"peak_multiplier": (1.0, 20.0), "rise_s": (5.0, 3600.0), "dump_s": (5.0, 7200.0),
                      "rate_multiplier": (1.0, 1000.0), "retained": (0.0, 1.0),
                      "pre_accumulation": (0.0, 1.0), "pre_accumulation_s": (60.0, 86400.0),
                      "pre_drift": (0.0, 0.5), "pre_rate_multiplier": (1.0, 10.0)},
    "flash_crash": {"drop": (0.001, 0.9), "fall_s": (1.0, 600.0), "recover_s": (1.0, 7200.0),
                    "recovery_fraction": (0.0, 1.0), "rate_multiplier": (1.0, 1000.0)},
    "volume_spike_flat": {"rate_multiplier": (1.0, 1000.0), "size_multiplier": (0.01, 100.0),
                          "duration_s": (1.0, 86400.0)},
    "stale_price": {"duration_s": (1.0, 7 * 86400.0)},
    "regime_shift": {"transition_s": (60.0, 86400.0), "vol_factor": (0.05, 20.0),
                     "volume_factor": (0.05, 20.0), "drift_per_h": (-0.5, 0.5)},
}  # fmt: skip


# --------------------------------------------------------------------------- numeric building blocks
def seed_sequence(seed: int, *parts: str | int) -> np.random.SeedSequence:
    """Seed sequence of (seed, parts), hashing the parts with BLAKE2 (stable across runs, unlike hash())."""
    words = [
        int.from_bytes(hashlib.blake2b(str(p).encode(), digest_size=8).digest(), "little") for p in parts
    ]
    return np.random.SeedSequence([seed, *words])


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _grid(value: float) -> tuple[float, int]:
    """Power-of-ten step about 1e-5 of ``value`` (at least 1e-8) and its number of decimals."""
    e = max(math.floor(math.log10(value)) - 5, -8)
    return 10.0**e, max(-e, 0)


def round_to_grid(x: npt.NDArray[np.float64], value: float) -> npt.NDArray[np.float64]:
    step, dec = _grid(value)
    return np.maximum(np.round(np.round(x / step) * step, dec), step)


def linear_recurrence(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64] | float, x0: float, block: int = 256
) -> npt.NDArray[np.float64]:
    """``x[t] = a[t] * x[t-1] + b[t]`` (``x[-1] = x0``, ``a > 0``), vectorised within blocks."""
    n = a.size
    c = -(-n // block)
    pad = c * block - n
    aa = np.concatenate([a, np.ones(pad)]).reshape(c, block)
    bb = np.concatenate([np.broadcast_to(b, (n,)), np.zeros(pad)]).reshape(c, block)
    prod = np.exp(np.cumsum(np.log(aa), axis=1))
    part = prod * np.cumsum(bb / prod, axis=1)  # solution of each block started from 0
    carry = np.empty(c)
    x = x0
    for i, (p_end, s_end) in enumerate(zip(prod[:, -1].tolist(), part[:, -1].tolist(), strict=True)):
        carry[i] = x
        x = p_end * x + s_end
    return np.asarray((prod * carry[:, None] + part).ravel()[:n], dtype=np.float64)


def ou_path(rng: np.random.Generator, n: int, tau: float, sd: float) -> npt.NDArray[np.float64]:
    """Stationary Ornstein-Uhlenbeck path sampled every second."""
    phi = math.exp(-1.0 / tau)
    b = rng.standard_normal(n) * (sd * math.sqrt(1.0 - phi * phi))
    b[0] *= 1.0 / math.sqrt(1.0 - phi * phi)
    return linear_recurrence(np.full(n, phi), b, 0.0)


def expected_fills(multi: float | FloatArray, extra: float | FloatArray) -> FloatArray:
    """Mean trades per order when a fraction ``multi`` of orders fills 2-4 (+ Poisson(extra)) times."""
    return np.asarray(1.0 + np.asarray(multi) * (2.0 + np.asarray(extra)), dtype=np.float64)


@dataclass
class Modulation:
    """Per-second knobs of one symbol (``n`` seconds; ``logp`` lives on the n + 1 grid points)."""

    rate: FloatArray  # multiplies the background trade rate
    add: FloatArray  # trade rate added on top, in units of the symbol's mean rate (manipulators' trades)
    vol: FloatArray  # multiplies the return standard deviation
    logp: FloatArray  # added to the log-price (permanent level shifts carry to the end)
    buy: FloatArray  # probability that a new order is a buy
    size: FloatArray  # multiplies trade sizes
    multi: FloatArray  # probability that an order fills several times in the same millisecond
    extra: FloatArray  # Poisson mean of the fills beyond 2-4 of such an order
    step: FloatArray  # relative price step between successive fills of one order
    stale: list[tuple[int, int]] = field(default_factory=list)  # [start, end) ms, frozen price

    @classmethod
    def neutral(cls, n: int, multi: float, step: float) -> Modulation:
        """Knobs of normal trading."""
        return cls(
            rate=np.ones(n),
            add=np.zeros(n),
            vol=np.ones(n),
            logp=np.zeros(n + 1),
            buy=np.full(n, 0.5),
            size=np.ones(n),
            multi=np.full(n, multi),
            extra=np.zeros(n),
            step=np.full(n, step),
        )

    @property
    def n(self) -> int:
        """Number of seconds."""
        return int(self.rate.size)


def _secs(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(round(rng.uniform(lo, hi)))


def draw_params(scenario: str, rng: np.random.Generator, liquid: bool) -> dict[str, float]:
    """Default parameters of one injection (always the same number of draws per scenario)."""
    if scenario == "pump_and_dump":
        return {
            "peak_multiplier": log_uniform(rng, 1.1, 1.5 if liquid else 3.5),
            "rise_s": _secs(rng, 60, 300),
            "dump_s": _secs(rng, 120, 900),
            "rate_multiplier": log_uniform(rng, 10, 100),
            "retained": float(rng.uniform(0.0, 0.15)),
            "pre_accumulation": float(rng.random() < 0.5),
            "pre_accumulation_s": _secs(rng, 3600, 10800),
            "pre_drift": float(rng.uniform(0.01, 0.05)),
            "pre_rate_multiplier": float(rng.uniform(1.3, 2.0)),
        }
    if scenario == "flash_crash":
        return {
            "drop": float(rng.uniform(0.05, 0.20)),
            "fall_s": _secs(rng, 3, 60),
            "recover_s": _secs(rng, 120, 900),
            "recovery_fraction": float(rng.uniform(0.6, 0.95)),
            "rate_multiplier": log_uniform(rng, 10, 40),
        }
    if scenario == "volume_spike_flat":
        return {
            "rate_multiplier": log_uniform(rng, 10, 50),
            "size_multiplier": float(rng.uniform(1.0, 1.5)),
            "duration_s": _secs(rng, 120, 900),
        }
    if scenario == "stale_price":
        return {"duration_s": _secs(rng, 600, 1800) if liquid else _secs(rng, 1800, 5400)}
    if scenario == "regime_shift":
        flips = rng.random(3) < 0.5
        return {
            "transition_s": _secs(rng, 2700, 4500),
            "vol_factor": log_uniform(rng, 1.5, 3.0) ** (-1.0 if flips[0] else 1.0),
            "volume_factor": log_uniform(rng, 1.5, 3.0) ** (-1.0 if flips[1] else 1.0),
            "drift_per_h": float(rng.uniform(0.002, 0.01)) * (-1.0 if flips[2] else 1.0),
        }
    raise ValueError(f"scenario: unknown {scenario!r}; expected one of {SCENARIOS}")


def resolve_params(
    scenario: str, given: Mapping[str, float], rng: np.random.Generator, liquid: bool, where: str
) -> dict[str, float]:
    """Validated ``given`` overrides on top of drawn defaults. ``where`` names the argument in errors."""
    if scenario not in _SPECS:
        raise ValueError(f"{where}.scenario: unknown {scenario!r}; expected one of {SCENARIOS}")
    spec = _SPECS[scenario]
    out = draw_params(scenario, rng, liquid)
    for key, value in given.items():
        if key not in spec:
            raise ValueError(f"{where}.params[{key!r}]: not a parameter of {scenario} ({sorted(spec)})")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{where}.params[{key!r}]: must be a finite number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{where}.params[{key!r}]: must be a finite number, got {value!r}")
        lo, hi = spec[key]
        if not lo <= value <= hi:
            raise ValueError(f"{where}.params[{key!r}]: {value!r} outside [{lo}, {hi}]")
        if key == "pre_accumulation" and value not in (0, 1):
            raise ValueError(f"{where}.params['pre_accumulation']: must be 0 or 1, got {value!r}")
        out[key] = float(value)
    return out


def footprint(scenario: str, params: Mapping[str, float]) -> tuple[float, float]:
    """Seconds the scenario acts before and after its start (the labelled part is after)."""
    p = params
    if scenario == "pump_and_dump":
        before = p["pre_accumulation_s"] if p["pre_accumulation"] else 0.0
        return before, p["rise_s"] + p["dump_s"]
    if scenario == "flash_crash":
        return 0.0, p["fall_s"] + p["recover_s"]
    if scenario == "regime_shift":
        return 0.0, p["transition_s"]
    return 0.0, p["duration_s"]


def _ease(n: int, k: float) -> FloatArray:
    """``n + 1`` points rising concavely from 0 to 1 (fast first, like a market reaction)."""
    u = np.linspace(0.0, 1.0, n + 1)
    return np.asarray(-np.expm1(-k * u) / -math.expm1(-k), dtype=np.float64)


def _level(m: Modulation, s0: int, path: FloatArray) -> None:
    """Add a log-price path starting at grid point ``s0``; its last value holds to the end."""
    g = m.logp.size
    k = min(path.size, g - s0)
    m.logp[s0 : s0 + k] += path[:k]
    m.logp[s0 + k :] += path[-1]


def _rush(m: Modulation, sl: slice, add: float | FloatArray, buy: float, multi: float, extra: float) -> None:
    """Add ``add`` x the mean trade rate, with a ``multi`` share of same-ms multi-fill orders."""
    m.add[sl] += add
    m.buy[sl], m.multi[sl], m.extra[sl] = buy, multi, extra


def _pump(m: Modulation, p: Mapping[str, float], s0: int, rush_step: float) -> int:
    if p["pre_accumulation"]:
        a = max(0, s0 - int(p["pre_accumulation_s"]))
        m.rate[a:s0] *= p["pre_rate_multiplier"]
        m.buy[a:s0] = 0.62
        m.logp[a : s0 + 1] += p["pre_drift"] * np.linspace(0.0, 1.0, s0 - a + 1)
        m.logp[s0 + 1 :] += p["pre_drift"]
    rise, dump, mult = int(p["rise_s"]), int(p["dump_s"]), p["rate_multiplier"]
    top = math.log(p["peak_multiplier"])
    low = math.log1p(p["retained"] * (p["peak_multiplier"] - 1.0))
    _level(m, s0, np.concatenate([top * _ease(rise, 3.0), low + (top - low) * (1.0 - _ease(dump, 4.0)[1:])]))
    up = slice(s0, min(s0 + rise, m.n))
    burst = 1.0 + 4.0 * np.exp(-np.arange(rise) / 15.0)  # the rush is strongest right after the call
    _rush(m, up, (mult - 1.0) * (burst / burst.mean())[: up.stop - up.start], 0.92, 0.8, RUSH_EXTRA_FILLS)
    m.size[up] *= 2.0
    m.step[up] = rush_step
    down = slice(min(s0 + rise, m.n), min(s0 + rise + dump, m.n))
    u = np.linspace(0.0, 1.0, dump, endpoint=False)[: down.stop - down.start]
    _rush(m, down, (mult / 2.0) * (1.0 - u) ** 2, buy=0.25, multi=0.3, extra=1.0)
    m.size[down] *= 1.5
    m.step[down] = rush_step
    return rise + dump


def _flash(m: Modulation, p: Mapping[str, float], s0: int, rush_step: float) -> int:
    fall, rec = int(p["fall_s"]), int(p["recover_s"])
    bottom = math.log1p(-p["drop"])
    final = math.log1p(-p["drop"] * (1.0 - p["recovery_fraction"]))
    _level(
        m, s0, np.concatenate([bottom * _ease(fall, 1.5), bottom + (final - bottom) * _ease(rec, 3.0)[1:]])
    )
    crash = slice(s0, min(s0 + fall, m.n))
    _rush(m, crash, p["rate_multiplier"] - 1.0, buy=0.1, multi=0.5, extra=2.0)
    m.size[crash] *= 2.5
    m.step[crash] = rush_step
    back = slice(crash.stop, min(s0 + fall + rec, m.n))
    u = np.linspace(0.0, 1.0, rec, endpoint=False)[: back.stop - back.start]
    m.add[back] += 4.0 * (1.0 - u) ** 2
    m.buy[back] = 0.6
    return fall + rec


def _wash(m: Modulation, p: Mapping[str, float], s0: int, rush_step: float) -> int:
    dur = int(p["duration_s"])
    sl = slice(s0, min(s0 + dur, m.n))
    m.add[sl] += p["rate_multiplier"] - 1.0
    m.size[sl] *= p["size_multiplier"]
    m.buy[sl] = 0.5
    return dur


def _stale(m: Modulation, p: Mapping[str, float], s0: int, rush_step: float) -> int:
    dur = int(p["duration_s"])
    m.vol[s0 : s0 + dur] = 0.0
    m.stale.append((s0 * 1000, min(s0 + dur, m.n) * 1000))
    return dur


def _regime(m: Modulation, p: Mapping[str, float], s0: int, rush_step: float) -> int:
    tr = int(p["transition_s"])
    w = np.clip((np.arange(m.n) + 0.5 - s0) / tr, 0.0, 1.0)
    m.rate *= p["volume_factor"] ** w
    m.vol *= p["vol_factor"] ** w
    m.logp[1:] += np.cumsum(w * (p["drift_per_h"] / 3600.0))
    return tr


_APPLY: dict[str, Callable[[Modulation, Mapping[str, float], int, float], int]] = {
    "pump_and_dump": _pump,
    "flash_crash": _flash,
    "volume_spike_flat": _wash,
    "stale_price": _stale,
    "regime_shift": _regime,
}


def apply_scenario(
    m: Modulation, scenario: str, params: Mapping[str, float], s0: int, rush_step: float
) -> tuple[int, int]:
    """Edit ``m`` for a scenario starting at second ``s0``; return its labelled [start, end) in ms."""
    length = _APPLY[scenario](m, params, s0, rush_step)
    return s0 * 1000, min(s0 + length, m.n) * 1000


# --------------------------------------------------------------------------- the simulator
def simulate(
    prof: SymbolProfile, start_ms: int, dur_ms: int, mod: Modulation, seed: int
) -> tuple[npt.NDArray[Any], ...]:
    """One symbol's trades: (ms since start, price, quantity, side)."""
    n = mod.n
    r_par, r_z, r_ou1, r_ou2, r_cnt, r_off, r_multi, r_fills, r_extra, r_rep, r_side, r_size, r_tail = (
        np.random.default_rng(s) for s in seed_sequence(seed, "symbol", prof.symbol).spawn(13)
    )
    micro = MICRO[prof.liquid]
    var_s = r_par.uniform(micro.vol_lo, micro.vol_hi) ** 2 / 86400.0

    # activity: intraday pattern x two log-normal OU factors (mean ~1)
    hour = ((start_ms + 1000 * np.arange(n, dtype=np.int64)) % 86_400_000) / 3_600_000.0
    x = ou_path(r_ou1, n, *_OU[0]) + ou_path(r_ou2, n, *_OU[1]) - 0.5 * sum(sd * sd for _, sd in _OU)
    activity = (1.0 + 0.3 * np.cos(2.0 * np.pi * (hour - 15.0) / 24.0)) * np.exp(x)

    # efficient log-price: GARCH(1,1) x Student-t innovations x activity coupling, plus scenario path
    z = np.clip(r_z.standard_t(_T_DF, n) * math.sqrt((_T_DF - 2.0) / _T_DF), -_Z_CAP, _Z_CAP)
    h = np.empty(n)
    h[0] = var_s
    h[1:] = linear_recurrence(
        _GARCH_ALPHA * z[:-1] ** 2 + _GARCH_BETA, var_s * (1 - _GARCH_ALPHA - _GARCH_BETA), var_s
    )
    ret = np.sqrt(h / (1.0 + h / (_VOL_CAP**2 * var_s))) * z * activity**_VOL_COUPLING * mod.vol
    lp = math.log(prof.base_price) + np.concatenate([[0.0], np.cumsum(ret)]) + mod.logp

    # orders: Cox process on the second grid, uniform milliseconds inside each second
    lam = prof.trades_per_s * (activity * mod.rate + mod.add) / expected_fills(mod.multi, mod.extra)
    counts = r_cnt.poisson(lam)
    t = np.repeat(np.arange(n, dtype=np.int64) * 1000, counts) + r_off.integers(0, 1000, int(counts.sum()))
    t.sort(kind="stable")
    t = t[t < dur_ms]
    m, sec = t.size, t // 1000
    fills = np.where(
        r_multi.random(m) < mod.multi[sec], r_fills.integers(2, 5, m) + r_extra.poisson(mod.extra[sec]), 1
    )
    fresh = r_rep.random(m) >= _SIDE_REPEAT
    fresh[:1] = True
    draw = np.where(r_side.random(m) < mod.buy[sec], 1, -1).astype(np.int8)
    side_o = draw[np.maximum.accumulate(np.where(fresh, np.arange(m), 0))]

    # trades: fills of one order share its millisecond and walk the book
    ts = np.repeat(t, fills)
    side = np.repeat(side_o, fills)
    j = np.arange(ts.size) - np.repeat(np.cumsum(fills) - fills, fills)
    st = ts // 1000
    frac = (ts - st * 1000) / 1000.0
    logp = lp[st] + frac * (lp[st + 1] - lp[st]) + side * (micro.half_spread + j * mod.step[st])
    price = np.exp(logp)
    for a, b in mod.stale:
        price[(ts >= a) & (ts < b)] = math.exp(lp[a // 1000])
    u = r_tail.random(ts.size)
    tail = np.where(u < _TAIL_P, (1.0 - np.minimum(u / _TAIL_P, 1.0 - 1e-9)) ** (-1.0 / _TAIL_ALPHA), 1.0)
    size = np.exp(_SIZE_SIGMA * r_size.standard_normal(ts.size) - 0.5 * _SIZE_SIGMA**2) * tail / _SIZE_NORM
    qty = round_to_grid(prof.mean_qty * mod.size[st] * size, prof.mean_qty * 100.0)
    if prof.tick_size is None:
        return ts, round_to_grid(price, prof.base_price), qty, side
    return ts, quote_on_ticks(price, side, mod.stale, ts, prof.tick_size), qty, side


def quote_on_ticks(
    price: FloatArray, side: npt.NDArray[np.int8], stale: list[tuple[int, int]], ts: npt.NDArray[np.int64],
    tick: float,
) -> FloatArray:
    """Prices on an exchange's tick grid: buys at the ask (rounded up), sells at the bid (down).

    A frozen stretch keeps one price (rounded to the nearest tick). Never below one tick.
    """
    units = price / tick
    on_grid = np.where(side > 0, np.ceil(units - 1e-9), np.floor(units + 1e-9))
    for a, b in stale:
        frozen = (ts >= a) & (ts < b)
        on_grid[frozen] = np.round(units[frozen])
    dec = max(0, -math.floor(math.log10(tick)) + 2)
    return np.round(np.maximum(on_grid, 1.0) * tick, dec)
