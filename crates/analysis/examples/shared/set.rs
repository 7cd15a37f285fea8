//! `field=value` overrides of a `DetectorConfig`, for the examples.

use sonde_analysis::DetectorConfig;

pub fn set(c: &mut DetectorConfig, k: &str, v: &str) {
    let f = || v.parse::<f64>().expect("number");
    let u = || v.parse::<u32>().expect("integer");
    match k {
        "warmup_points" => c.warmup_points = u(),
        "quiet_points" => c.quiet_points = u(),
        "fast_alpha" => c.fast_alpha = f(),
        "slow_alpha" => c.slow_alpha = f(),
        "clip" => c.clip = f(),
        "season_day_alpha" => c.season_day_alpha = f(),
        "long_alpha" => c.long_alpha = f(),
        "season_bin_share" => c.season_bin_share = f(),
        "channel_warmup" => c.channel_warmup = u(),
        "spread_floor" => c.spread_floor = f(),
        "err_clip" => c.err_clip = f(),
        "weekly" => c.weekly = v == "1",
        "tail_gamma" => c.tail_gamma = f(),
        "tail_share" => c.tail_share = f(),
        "run_alpha" => c.run_alpha = f(),
        "prior_weight" => c.prior_weight = f(),
        "prior_gamma" => c.prior_gamma = f(),
        "score_nats" => c.score_nats = f(),
        "alert_score" => c.alert_score = f(),
        "suppress_points" => c.suppress_points = u(),
        "suppress_factor" => c.suppress_factor = f(),
        "spike_z" => c.spike_z = f(),
        "spike_k" => c.spike_k = f(),
        "shift_alpha" => c.shift_alpha = f(),
        "shift_clip" => c.shift_clip = f(),
        "shift_min" => c.shift_min = f(),
        "shift_delay" => c.shift_delay = u(),
        "suppress_from" => c.suppress_from = f(),
        "agree_weight" => c.agree_weight = f(),
        "noise_alpha" => c.noise_alpha = f(),
        "noise_clip" => c.noise_clip = f(),
        "noise_min" => c.noise_min = f(),
        _ => panic!("unknown field {k}"),
    }
}
