"""Seeded, labelled synthetic trade ticks with realistic crypto microstructure.

Pure (numpy + stdlib, no I/O). Each symbol is simulated on a one-second grid and
the trades are then drawn inside the seconds, all vectorised; the scenarios that
are injected and labelled live in :mod:`models.synthetic_scenarios`.

The model, and the published facts it reproduces
------------------------------------------------
* **Arrivals** form a doubly stochastic (Cox) Poisson process [Cox55]_: the order
  intensity of a symbol is its base rate times an intraday pattern by UTC hour
  (activity peaks around 15:00 UTC, the US/EU overlap, and is lowest around 03:00,
  +-30 %) times ``exp`` of two mean-reverting Ornstein-Uhlenbeck log-intensity
  factors (time constants 2 h and 90 s), so activity comes in bursts and trade
  durations are over-dispersed (coefficient of variation > 1) as reported since
  Engle & Russell's ACD model [ER98]_. A market order occasionally (1.5-3 % of
  orders) fills 2-4 times in the same millisecond.
* **Returns** per second are Student-t (5 degrees of freedom, unit variance,
  clipped at 8 sd) innovations scaled by a GARCH(1,1) variance [Bol86]_ (alpha
  0.04, beta 0.958; its sd saturates at 4x the mean so that no unlabelled crash
  appears) and by the square root of activity (variance follows activity:
  volume and volatility move together, [Cla73]_). This gives the heavy tails
  (excess kurtosis of 1-minute returns typically 2-20), volatility clustering
  and positive autocorrelation of absolute returns of [Con01]_. Trades are
  at the interpolated efficient price plus a bid-ask half-spread on the taker's
  side, multi-fill orders walk the book, and prices are rounded to a tick of
  about 1e-5 of the price level (at least 1e-8, one satoshi).
* **Sizes** are log-normal (sigma 1.2) with a Pareto tail (5 % of trades,
  exponent 1.6; share volume has a power-law tail of exponent ~1.5 [Gop00]_),
  rounded to a lot of 1e-3 of the mean size. **Taker sides** are mildly
  persistent (an order repeats the previous side with probability 0.3 and is
  otherwise a fresh draw; order-flow signs are autocorrelated [LF04]_).
* **Scenarios.** ``pump_and_dump`` follows the pumps organised by Telegram groups
  on low-cap Binance BTC pairs studied by La Morgia et al. [LM20]_ (also
  [KK18]_, [XL19]_): announced at a minute boundary, the price rises x1.1-3.5 in
  1-5 minutes on "rush orders" (market buys filling many times in the same
  millisecond), trade count and volume jump 10-100x over the previous hours and
  the dump follows within minutes; the optional pre-accumulation phase has
  modestly elevated buy volume and a slight upward drift during the hours before.
  ``flash_crash`` drops 5-20 % within seconds to a minute on heavy selling and
  recovers most of it over minutes (as in the 2010 flash crash [Kir17]_).
  ``volume_spike_flat`` is wash trading (volume without economic change, found
  on unregulated exchanges by [Con23]_): x10-50 trades with balanced sides and
  an unchanged price path. ``stale_price`` freezes the traded price
  while trades continue. ``regime_shift`` changes volatility, activity and drift
  gradually over about an hour and the change persists; only the transition is
  labelled.

A :class:`Label` runs from the first tick at or after the (snapped) start of the
anomaly to the time it is over (a pump: the end of the dump; a pump's
pre-accumulation comes before its label). Parameters and their default ranges are
listed in :mod:`models.synthetic_scenarios`.

Every random stream is derived with :class:`numpy.random.SeedSequence` from the
seed and a BLAKE2 hash of the symbol (and of the injection), so adding a symbol or
an injection changes nothing else, and each per-tick stream is drawn in time order
so an injection does not change the ticks before it (or its pre-accumulation) starts.

References
----------
.. [Cox55] D. R. Cox, "Some statistical methods connected with series of events", JRSS B 17, 1955.
.. [ER98] R. Engle, J. Russell, "Autoregressive conditional duration", Econometrica 66, 1998.
.. [Bol86] T. Bollerslev, "Generalized autoregressive conditional heteroskedasticity",
   J. Econometrics 31, 1986.
.. [Cla73] P. Clark, "A subordinated stochastic process model with finite variance for speculative prices",
   Econometrica 41, 1973.
.. [Con01] R. Cont, "Empirical properties of asset returns: stylized facts and statistical issues",
   Quantitative Finance 1, 2001.
.. [Gop00] P. Gopikrishnan et al., "Statistical properties of share volume traded in financial markets",
   Phys. Rev. E 62, 2000.
.. [LF04] F. Lillo, J. D. Farmer, "The long memory of the efficient market", SNDE 8, 2004.
.. [LM20] M. La Morgia, A. Mei, F. Sassi, J. Stefa, "Pump and dumps in the Bitcoin era: real time detection
   of cryptocurrency market manipulations", ICCCN 2020.
.. [KK18] J. Kamps, B. Kleinberg, "To the moon: defining and detecting cryptocurrency pump-and-dumps",
   Crime Science 7, 2018.
.. [XL19] J. Xu, B. Livshits, "The anatomy of a cryptocurrency pump-and-dump scheme", USENIX Security 2019.
.. [Kir17] A. Kirilenko, A. Kyle, M. Samadi, T. Tuzun, "The Flash Crash: high-frequency trading in an
   electronic market", J. Finance 72, 2017.
.. [Con23] L. W. Cong, X. Li, K. Tang, Y. Yang, "Crypto wash trading", Management Science 69, 2023.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from models import synthetic_scenarios as sc
from models.errors import BadTickError
from models.ticks import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, Side, Tick, tick_from_dict

SCENARIOS: tuple[str, ...] = sc.SCENARIOS
EXCHANGE = "synthetic"
MIN_EVENT_GAP_S = 2 * 3600.0  # random_injections: quiet time between two events of one symbol

# Default names: liquid USDT pairs with a typical price, then illiquid BTC pairs (low caps, as pumped).
_LIQUID = {"BTCUSDT": 60000.0, "ETHUSDT": 3000.0, "BNBUSDT": 550.0, "SOLUSDT": 150.0, "XRPUSDT": 0.55,
           "ADAUSDT": 0.45, "DOGEUSDT": 0.15, "AVAXUSDT": 35.0, "LINKUSDT": 15.0, "DOTUSDT": 7.0}  # fmt: skip
_ILLIQUID = ("BRD/BTC", "XYZBTC", "NAS/BTC", "VIBBTC", "POA/BTC", "EVXBTC", "MTH/BTC", "OSTBTC",
             "QSP/BTC", "RDNBTC")  # fmt: skip


@dataclass(frozen=True)
class SymbolProfile:
    """Static description of one instrument (``trades_per_s`` is the mean trade rate).

    ``tick_size`` (optional) is the exchange's price increment. Given, trades print on that grid
    at the bid or the ask: a buy rounds the price up, a sell down, so where one tick is wider than
    the spread (a large-tick coin, e.g. a BTC pair priced at a few hundred satoshi) trades bounce
    between two levels a tick apart, as they do on such markets. ``None``: prices are rounded to
    about 1e-5 of ``base_price`` (at least one satoshi), to the nearest.
    """

    symbol: str
    base_price: float
    trades_per_s: float
    mean_qty: float
    liquid: bool
    tick_size: float | None = None


@dataclass(frozen=True)
class Injection:
    """A scenario to inject; ``params`` override its randomly drawn defaults (see ``synthetic_scenarios``)."""

    scenario: str
    symbol: str
    start_ms: int
    params: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Label:
    """Ground truth: ``start_ms`` = first anomalous tick, ``end_ms`` = when the anomaly is over."""

    scenario: str
    symbol: str
    start_ms: int
    end_ms: int


@dataclass
class TickBatch:
    """Columnar ticks sorted by timestamp (ties: profile order, then trade order).

    ``symbol`` is an object array of str, ``side`` is +1 (taker buy) / -1 (taker sell),
    ``trade_id`` (optional) counts each symbol's trades from 1.
    """

    symbol: npt.NDArray[np.object_]
    timestamp: npt.NDArray[np.int64]
    price: npt.NDArray[np.float64]
    quantity: npt.NDArray[np.float64]
    side: npt.NDArray[np.int8]
    trade_id: npt.NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        self.symbol = np.asarray(self.symbol, dtype=object)
        n = self.symbol.size
        for name in ("timestamp", "price", "quantity", "side", "trade_id"):
            col = getattr(self, name)
            if col is not None and np.shape(col) != (n,):
                raise ValueError(f"{name}: expected {n} values, got shape {np.shape(col)}")

    def __len__(self) -> int:
        return int(self.symbol.size)

    def select(self, symbol: str) -> TickBatch:
        """The ticks of one symbol."""
        m = self.symbol == symbol
        tid = None if self.trade_id is None else self.trade_id[m]
        return TickBatch(
            self.symbol[m], self.timestamp[m], self.price[m], self.quantity[m], self.side[m], tid
        )

    def _rows(self, chunk: int = 65536) -> Iterator[tuple[str, float, float, int, Side, int | None]]:
        for i in range(0, len(self), chunk):
            sl = slice(i, i + chunk)
            tids = self.trade_id[sl].tolist() if self.trade_id is not None else [None] * len(self.side[sl])
            cols = (
                self.symbol[sl].tolist(),
                self.price[sl].tolist(),
                self.quantity[sl].tolist(),
                self.timestamp[sl].tolist(),
                self.side[sl].tolist(),
                tids,
            )
            for sym, p, q, ts, s, tid in zip(*cols, strict=True):
                yield sym, p, q, ts, ("buy" if s > 0 else "sell"), tid

    def ticks(self) -> Iterator[Tick]:
        """:class:`~models.ticks.Tick` objects (``exchange="synthetic"``)."""
        for sym, p, q, ts, s, tid in self._rows():
            yield Tick(sym, p, q, ts, s, EXCHANGE, tid)

    def records(self) -> Iterator[dict[str, Any]]:
        """The ``Tick.to_dict()`` wire form, without building ``Tick`` objects."""
        for sym, p, q, ts, s, tid in self._rows():
            rec: dict[str, Any] = {
                "symbol": sym,
                "price": p,
                "quantity": q,
                "timestamp": ts,
                "side": s,
                "exchange": EXCHANGE,
            }
            if tid is not None:
                rec["trade_id"] = tid
            yield rec


# --------------------------------------------------------------------------- helpers
# The API promises ValueError naming the argument, also for a wrong type (hence the noqa: TRY004).
def _int(name: str, value: object, lo: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: must be an integer, got {value!r}")  # noqa: TRY004
    out = int(value)
    if lo is not None and out < lo:
        raise ValueError(f"{name}: must be >= {lo}, got {out}")
    return out


def _num(name: str, value: object, lo: float, hi: float = math.inf, open_lo: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: must be a number, got {value!r}")  # noqa: TRY004
    x = float(value)
    if not math.isfinite(x) or x < lo or x > hi or (open_lo and x == lo):
        raise ValueError(f"{name}: {value!r} outside {'(' if open_lo else '['}{lo}, {hi}]")
    return x


# --------------------------------------------------------------------------- profiles
def default_profiles(n_symbols: int, *, seed: int, illiquid_fraction: float = 0.5) -> list[SymbolProfile]:
    """Liquid USDT pairs (2-10 trades/s) then illiquid BTC pairs (0.02-0.5 trades/s).

    Each profile depends only on (seed, symbol), so a longer list extends a shorter one
    with the same fraction. Liquid: BTCUSDT, ETHUSDT, ... then ``SYN012USDT`` ...;
    illiquid: BRD/BTC, XYZBTC, ... then ``ILQ012/BTC`` ... (prices 5e-6-5e-4 BTC).
    """
    n = _int("n_symbols", n_symbols, 1)
    seed = _int("seed", seed, 0)
    n_ill = round(n * _num("illiquid_fraction", illiquid_fraction, 0.0, 1.0))
    out = []
    for i in range(n - n_ill):
        name = list(_LIQUID)[i] if i < len(_LIQUID) else f"SYN{i:03d}USDT"
        rng = np.random.default_rng(sc.seed_sequence(seed, "profile", name))
        rate, notional = sc.log_uniform(rng, 2.0, 10.0), sc.log_uniform(rng, 300.0, 3000.0)
        price = _LIQUID.get(name) or float(f"{sc.log_uniform(rng, 0.1, 1000.0):.4g}")
        out.append(SymbolProfile(name, price, round(rate, 3), float(f"{notional / price:.4g}"), True))
    for i in range(n_ill):
        name = _ILLIQUID[i] if i < len(_ILLIQUID) else f"ILQ{i:03d}/BTC"
        rng = np.random.default_rng(sc.seed_sequence(seed, "profile", name))
        rate, notional = sc.log_uniform(rng, 0.02, 0.5), sc.log_uniform(rng, 0.005, 0.05)
        price = round(sc.log_uniform(rng, 5e-6, 5e-4), 8)
        out.append(SymbolProfile(name, price, round(rate, 4), float(f"{notional / price:.4g}"), False))
    return out


#: Profile sets outside the ranges training sees, to check that the detector generalises.
PROFILE_SETS: tuple[str, ...] = ("default", "large_tick", "sparse")
SATOSHI = 1e-8


def stress_profiles(kind: str, n_symbols: int, *, seed: int) -> list[SymbolProfile]:
    """Illiquid BTC pairs outside the default ranges (``default_profiles`` for ``"default"``).

    ``large_tick``: priced 1e-7-2e-6 BTC on a one-satoshi grid, so one tick is 0.5-10 % of the
    price and trades bounce between bid and ask (``SymbolProfile.tick_size``); low-priced coins are
    the usual pump targets. ``sparse``: 0.003-0.02 trades/s (250-1,700 trades a day), prices as
    the default illiquid ones. Named ``LTK000/BTC`` or ``SPR000/BTC`` ...; each profile depends
    only on (seed, kind, position).

    Examples
    --------
    >>> p = stress_profiles("large_tick", 2, seed=1)
    >>> [x.symbol for x in p], all(x.tick_size == SATOSHI and x.base_price <= 2e-6 for x in p)
    (['LTK000/BTC', 'LTK001/BTC'], True)
    """
    n = _int("n_symbols", n_symbols, 1)
    seed = _int("seed", seed, 0)
    if kind == "default":
        return default_profiles(n, seed=seed)
    if kind not in PROFILE_SETS:
        raise ValueError(f"kind: one of {PROFILE_SETS}, got {kind!r}")
    out = []
    for i in range(n):
        name = f"{'LTK' if kind == 'large_tick' else 'SPR'}{i:03d}/BTC"
        rng = np.random.default_rng(sc.seed_sequence(seed, "profile", kind, name))
        lo, hi = (0.02, 0.5) if kind == "large_tick" else (0.003, 0.02)
        rate, notional = sc.log_uniform(rng, lo, hi), sc.log_uniform(rng, 0.005, 0.05)
        p_lo, p_hi = (1e-7, 2e-6) if kind == "large_tick" else (5e-6, 5e-4)
        price = round(sc.log_uniform(rng, p_lo, p_hi), 8)
        tick = SATOSHI if kind == "large_tick" else None
        out.append(SymbolProfile(name, price, round(rate, 4), float(f"{notional / price:.4g}"), False, tick))
    return out


def quiet_symbols(profiles: Sequence[SymbolProfile], fraction: float) -> list[str]:
    """Every ``1 / fraction``-th symbol of each liquidity class (by position): the symbols left without
    events, so that a data set has long quiet stretches on liquid and illiquid symbols alike.

    Examples
    --------
    >>> quiet_symbols(default_profiles(8, seed=1), 0.25)
    ['SOLUSDT', 'VIBBTC']
    """
    frac = _num("fraction", fraction, 0.0, 1.0)
    if frac == 0.0:
        return []
    step = 1.0 / frac
    out: list[str] = []
    for liquid in (True, False):
        group = [p.symbol for p in profiles if p.liquid == liquid]
        out += [sym for i, sym in enumerate(group) if math.floor((i + 1) / step) > math.floor(i / step)]
    return out


def _check_span(start_ms: object, duration_s: object) -> tuple[int, int]:
    start = _int("start_ms", start_ms, MIN_TIMESTAMP_MS)
    dur_ms = round(_num("duration_s", duration_s, 1.0) * 1000.0)
    if start + dur_ms > MAX_TIMESTAMP_MS:
        raise ValueError(f"duration_s: the series would end after {MAX_TIMESTAMP_MS} ms")
    return start, dur_ms


def _check_profiles(profiles: Sequence[SymbolProfile]) -> list[SymbolProfile]:
    out = list(profiles)
    if not out:
        raise ValueError("profiles: at least one profile is required")
    seen: set[str] = set()
    for i, p in enumerate(out):
        if not isinstance(p, SymbolProfile):
            raise ValueError(f"profiles[{i}]: expected a SymbolProfile, got {type(p).__name__}")  # noqa: TRY004
        try:  # the same rules as a tick: symbol syntax, positive finite price and quantity
            tick_from_dict(
                dict(symbol=p.symbol, price=p.base_price, quantity=p.mean_qty, timestamp=MIN_TIMESTAMP_MS)
            )
        except BadTickError as exc:
            raise ValueError(f"profiles[{i}]: {exc}") from None
        _num(f"profiles[{i}].trades_per_s", p.trades_per_s, 0.0, 1e4, open_lo=True)
        if p.tick_size is not None:
            _num(f"profiles[{i}].tick_size", p.tick_size, 0.0, p.base_price, open_lo=True)
        if p.symbol in seen:
            raise ValueError(f"profiles[{i}]: duplicate symbol {p.symbol!r}")
        seen.add(p.symbol)
    return out


def generate(
    profiles: Sequence[SymbolProfile],
    *,
    start_ms: int,
    duration_s: float,
    injections: Sequence[Injection] = (),
    seed: int,
) -> tuple[TickBatch, list[Label]]:
    """Simulate trade ticks of several symbols, with labelled injected scenarios.

    Parameters
    ----------
    profiles : sequence of SymbolProfile
        The symbols (unique names).
    start_ms : int
        Start of the series, ms since the epoch (UTC; drives the intraday pattern).
    duration_s : float
        Length of the series in seconds (>= 1); ticks fall in ``[start_ms, start_ms + duration)``.
    injections : sequence of Injection
        Scenarios to inject. ``start_ms`` must lie in the series; it is moved up to the
        one-second grid of the series (``pump_and_dump``: first to a whole UTC minute).
    seed : int
        Non-negative seed; the same arguments give bitwise identical output.

    Returns
    -------
    batch : TickBatch
        All ticks sorted by timestamp.
    labels : list of Label
        One per injection, in the order given; windows cut at the end of the series.

    Raises
    ------
    ValueError
        Naming the offending argument.

    Examples
    --------
    >>> profiles = default_profiles(2, seed=7)
    >>> [p.symbol for p in profiles]
    ['BTCUSDT', 'BRD/BTC']
    >>> crash = Injection("flash_crash", "BTCUSDT", 1_700_001_800_000, {"drop": 0.1})
    >>> batch, labels = generate(profiles, start_ms=1_700_000_000_000, duration_s=3600,
    ...                          injections=[crash], seed=1)
    >>> len(batch) > 5000, bool((batch.timestamp[1:] >= batch.timestamp[:-1]).all())
    (True, True)
    >>> labels[0].scenario, labels[0].start_ms >= crash.start_ms
    ('flash_crash', True)
    >>> next(batch.ticks()).exchange
    'synthetic'
    """
    seed = _int("seed", seed, 0)
    profs = _check_profiles(profiles)
    start, dur_ms = _check_span(start_ms, duration_s)
    n = -(-dur_ms // 1000)
    mods = {
        p.symbol: sc.Modulation.neutral(n, sc.MICRO[p.liquid].multi, sc.MICRO[p.liquid].step) for p in profs
    }
    liquid = {p.symbol: p.liquid for p in profs}
    windows: list[tuple[str, int, int]] = []
    for i, inj in enumerate(injections):
        where = f"injections[{i}]"
        if not isinstance(inj, Injection):
            raise ValueError(f"{where}: expected an Injection, got {type(inj).__name__}")  # noqa: TRY004
        if inj.symbol not in mods:
            raise ValueError(f"{where}.symbol: {inj.symbol!r} is not in profiles")
        t0 = _int(f"{where}.start_ms", inj.start_ms)
        if not start <= t0 < start + dur_ms:
            raise ValueError(f"{where}.start_ms: {t0} outside the series [{start}, {start + dur_ms})")
        rng = np.random.default_rng(sc.seed_sequence(seed, "injection", inj.symbol, str(inj.scenario), t0))
        params = sc.resolve_params(inj.scenario, inj.params, rng, liquid[inj.symbol], where)
        if inj.scenario == "pump_and_dump":  # announced on the minute
            t0 = -(-t0 // 60_000) * 60_000
        s0 = -(-(t0 - start) // 1000)
        if s0 >= n:
            raise ValueError(f"{where}.start_ms: {t0} snaps past the end of the series")
        a, b = sc.apply_scenario(
            mods[inj.symbol], inj.scenario, params, s0, sc.MICRO[liquid[inj.symbol]].rush_step
        )
        windows.append((inj.symbol, a, b))

    parts = {p.symbol: sc.simulate(p, start, dur_ms, mods[p.symbol], seed) for p in profs}
    labels = []
    for inj, (sym, a, b) in zip(injections, windows, strict=True):
        ts = parts[sym][0]
        k = int(np.searchsorted(ts, a))
        first = int(ts[k]) if k < ts.size and ts[k] < b else a
        labels.append(Label(inj.scenario, sym, start + first, start + min(b, dur_ms)))

    cols = list(zip(*parts.values(), strict=True))
    sizes = [c.size for c in cols[0]]
    ts_all = np.concatenate(cols[0]) + start
    order = np.argsort(ts_all, kind="stable")
    symbol = np.repeat(np.array([p.symbol for p in profs], dtype=object), sizes)[order]
    trade_id = np.concatenate([np.arange(1, k + 1, dtype=np.int64) for k in sizes])[order]
    batch = TickBatch(
        symbol,
        ts_all[order],
        np.concatenate(cols[1])[order],
        np.concatenate(cols[2])[order],
        np.concatenate(cols[3])[order],
        trade_id,
    )
    return batch, labels


def random_injections(
    profiles: Sequence[SymbolProfile],
    *,
    start_ms: int,
    duration_s: float,
    seed: int,
    per_symbol_day: float = 2.0,
    scenarios: Sequence[str] = SCENARIOS,
    warmup_s: float = 3600.0,
    quiet: Collection[str] = (),
) -> list[Injection]:
    """Random, fully parameterised injections, sorted by start time.

    Each symbol gets Poisson(``per_symbol_day`` x days) events (fewer if they do not fit),
    with a uniformly chosen scenario and drawn parameters (all written into ``params``).
    No event (including a pump's pre-accumulation) starts within ``warmup_s`` of the
    start, none runs past the end, and two events of one symbol are at least 2 h apart
    (end of one to start of the next). Pumps start on a whole minute. A symbol's events
    depend only on (seed, symbol) and the span, so adding a symbol moves no other's.
    Symbols in ``quiet`` get no event at all: long quiet stretches that measure false alarms
    (the other symbols' events are unchanged).
    """
    seed = _int("seed", seed, 0)
    profs = _check_profiles(profiles)
    start, dur_ms = _check_span(start_ms, duration_s)
    rate = _num("per_symbol_day", per_symbol_day, 0.0, 1e4)
    warm_ms = round(_num("warmup_s", warmup_s, 0.0) * 1000.0)
    pool = tuple(scenarios)
    if not pool or any(s not in SCENARIOS for s in pool):
        raise ValueError(f"scenarios: must be a non-empty subset of {SCENARIOS}, got {pool!r}")
    out: list[Injection] = []
    unknown = set(quiet) - {p.symbol for p in profs}
    if unknown:
        raise ValueError(f"quiet: not in profiles: {sorted(unknown)}")
    for p in profs:
        if p.symbol in quiet:
            continue
        rng = np.random.default_rng(sc.seed_sequence(seed, "injections", p.symbol))
        taken: list[tuple[int, int]] = []
        for _ in range(int(rng.poisson(rate * dur_ms / 86_400_000))):
            for _attempt in range(50):
                name = pool[int(rng.integers(len(pool)))]
                params = sc.draw_params(name, rng, p.liquid)
                before, after = (round(x * 1000.0) for x in sc.footprint(name, params))
                lo, hi = start + warm_ms + before, start + dur_ms - after - 61_000
                t = lo + int(rng.random() * (hi - lo))
                if name == "pump_and_dump":  # announced on the minute
                    t = -(-t // 60_000) * 60_000
                else:  # on the series' one-second grid
                    t = start + -(-(t - start) // 1000) * 1000
                gap = round(MIN_EVENT_GAP_S * 1000)
                if hi > lo and all(t - before >= b + gap or t + after + gap <= a for a, b in taken):
                    taken.append((t - before, t + after))
                    out.append(Injection(name, p.symbol, t, params))
                    break
    return sorted(out, key=lambda inj: (inj.start_ms, inj.symbol))
