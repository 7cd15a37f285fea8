"""Reference implementations of the few PromQL computations whose expected
results the tests work out themselves, as Prometheus computes them. Sonde's
engine follows Prometheus 3 (the promqltest corpus it is checked against);
where Prometheus 2 differs, `prometheus_major=2` gives the older result."""

from __future__ import annotations

import math


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """`histogram_quantile` over classic buckets [(upper bound, cumulative count)]."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets)
    if not buckets or not math.isinf(buckets[-1][0]):
        return math.nan
    # Make the counts monotonic, as Prometheus does.
    fixed, peak = [], -math.inf
    for ub, c in buckets:
        peak = max(peak, c)
        fixed.append((ub, peak))
    buckets = fixed
    if len(buckets) < 2:
        return math.nan
    observations = buckets[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next((i for i in range(len(buckets) - 1) if buckets[i][1] >= rank), len(buckets) - 1)
    if b == len(buckets) - 1:
        return buckets[-2][0]
    if b == 0 and buckets[0][0] <= 0:
        return buckets[0][0]
    start, end, count = 0.0, buckets[b][0], buckets[b][1]
    if b > 0:
        start = buckets[b - 1][0]
        count -= buckets[b - 1][1]
        rank -= buckets[b - 1][1]
    return start + (end - start) * (rank / count)


def extrapolated_rate(
    points: list[tuple[int, float]],
    eval_ms: int,
    range_ms: int,
    is_counter: bool = True,
    is_rate: bool = False,
    prometheus_major: int = 3,
) -> float | None:
    """`increase` (or `rate`, `delta`) for the samples [(time in ms, value)]
    inside the window; None when it gives nothing.

    Prometheus 2 lets the counter's zero point pull the start in first and
    then checks the 110% threshold; Prometheus 3 caps the start at half a
    step first and then applies the zero point."""
    if len(points) < 2:
        return None
    range_start = eval_ms - range_ms
    range_end = eval_ms
    first_t, first_v = points[0]
    last_t, last_v = points[-1]
    result = last_v - first_v
    if is_counter:
        prev = 0.0
        for _, v in points:
            if v < prev:
                result += prev
            prev = v
    duration_to_start = (first_t - range_start) / 1000
    duration_to_end = (range_end - last_t) / 1000
    sampled = (last_t - first_t) / 1000
    average = sampled / (len(points) - 1)
    threshold = average * 1.1
    if prometheus_major >= 3 and duration_to_start >= threshold:
        duration_to_start = average / 2
    if is_counter and result > 0 and first_v >= 0:
        duration_to_zero = sampled * (first_v / result)
        if duration_to_zero < duration_to_start:
            duration_to_start = duration_to_zero
    interval = sampled
    interval += duration_to_start if duration_to_start < threshold else average / 2
    interval += duration_to_end if duration_to_end < threshold else average / 2
    result = result * (interval / sampled)
    if is_rate:
        result /= range_ms / 1000
    return result
