//! The production anomaly detector: one per series, fed point by point.
//!
//! Two models say what each point should be: the recent level (a robust
//! exponentially weighted mean) and, once a day has been seen, the usual
//! value at this time of day (separate profiles for weekdays, in 45-minute
//! bins, and weekends, in hourly ones).
//! Each model's deviation, in units of its own typical error, is judged
//! against that model's history of deviations: how often one at least this
//! large has been seen, both as a single point and as a short run (the
//! geometric mean of recent deviations, which catches shifts and bursts of
//! moderate size). So the score is a tail probability of this series' own
//! behaviour, comparable across series whatever their noise: a spike in a
//! spiky series is ordinary, the same spike in a quiet one is not. Beyond
//! the largest deviations seen, the tail is extrapolated with Pareto decay,
//! from the history's own largest deviations and from a weak prior; the
//! decay's exponent is that history's own, estimated (Hill) from its top
//! tenth, so a deviation beyond all seen is less surprising in a series
//! whose large deviations thin out slowly than in one whose do not. Each
//! model also learns how often the series spikes (deviations beyond
//! `spike_z`); in a series that spikes often, a single point's surprise is
//! scaled down (`1 / (1 + spike_k * rate)`), so a spike a little larger than
//! the earlier ones is not taken for an incident, while runs still count
//! in full.
//!
//! A third check looks for sustained shifts of the level: a mean of the
//! recent values whose steps are clipped to two long-run spreads (so lone
//! spikes barely move it) is compared with the long-run level, in units of
//! the long-run robust spread. Once it is at least three spreads away, its
//! rarity is judged against the series' history of such shifts, learnt 32
//! points late (four bits a point), so the first points of an excursion
//! are judged against the history from before it: a ramp to four times
//! the level in a noisy series alerts within 8 to 17 points (synthetic
//! runs; the test allows 30).
//!
//! A fourth check looks for a series getting noisier: the recent mean of
//! its point-to-point changes (each clipped to four long-run means, so a
//! lone spike barely moves it), against the long-run mean. Once it is at
//! least 1.5 times as large, its rarity is judged against the series'
//! history of such ratios, learnt 32 points late like the shifts.
//!
//! The score is `-ln p / 23` (p = 1e-10 scores 1), with the smallest p of
//! the checks, doubled once the time-of-day model also looks (two models,
//! two chances of a rare verdict; the shift and noise checks, which fire
//! only on large excursions, are not counted); when both models are
//! surprised, the less surprised one's p, raised to a small power
//! (`agree_weight`), strengthens the verdict. After a score of
//! `suppress_from`, scores are damped for a while, so one incident gives
//! one alert, not a storm. State is fixed, under 1 KB per series (1,016
//! bytes), with no allocation.

use std::sync::Arc;

use crate::seasonal::DailyProfile;
use crate::stats::{NibbleDelay, RobustEw, TailHistogram};

/// Bins of the weekday profile (45 minutes each): finer than hours, so
/// sharp daily edges are followed, yet each bin still sees several points
/// a day at common intervals.
const DAY_BINS: usize = 32;
/// Bins of the weekend profile, which learns from two days in seven and so
/// needs wider bins to settle.
const WEEKEND_BINS: usize = 24;
/// Bins of the shift history: half-octaves from 0.5 to about 90 spreads,
/// so a bin fits in the four bits of the delay line.
const SHIFT_BINS: usize = 15;
/// Bins of the noise history: half-octaves of the ratio from 0.5; the
/// clipped ratio stays below the last one's start (about 5.7).
const NOISE_BINS: usize = 8;

/// Largest magnitude of a value the detector learns.
const MAX_VALUE: f64 = 1e30;

/// How the detector learns and scores. One configuration serves every
/// series: the defaults are tuned on NAB as a whole, never per series.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Points used only to settle the models before surprises are recorded.
    pub warmup_points: u32,
    /// Points (counted from the first) whose score is held at 0 while the
    /// surprise distribution is learnt.
    pub quiet_points: u32,
    /// Weight of one point in the recent-level model.
    pub fast_alpha: f64,
    /// Weight of one point in the models' error scales.
    pub slow_alpha: f64,
    /// Smallest spread of a model, as a share of the values' overall spread.
    pub spread_floor: f64,
    /// Largest move one point makes in a robust estimate, in units of its scale.
    pub clip: f64,
    /// Largest error one point adds to a model's error scale, in units of that scale.
    pub err_clip: f64,
    /// Weight of one day in the time-of-day profile.
    pub season_day_alpha: f64,
    /// Smallest spread of a profile bin, as a share of the profile's mean error.
    pub season_bin_share: f64,
    /// Weight of one point in the distribution of deviations.
    pub long_alpha: f64,
    /// Points a model's surprise history learns before it judges.
    pub channel_warmup: u32,
    /// Weight of one point in the short-term mean deviation.
    pub run_alpha: f64,
    /// Pseudo-points of the prior tail of deviations.
    pub prior_weight: f64,
    /// Exponent of the prior's Pareto tail.
    pub prior_gamma: f64,
    /// Exponent of the Pareto tail continuing the largest deviations seen
    /// (0: none), when it is not estimated (`tail_share` 0).
    pub tail_gamma: f64,
    /// Share of a history's mass, from its largest deviations down, over
    /// which that history's own tail exponent is estimated (a Hill
    /// estimate, clamped to 1 to 8) to continue its tail (0: use the
    /// fixed `tail_gamma`).
    pub tail_share: f64,
    /// Surprise (nats: minus the log tail probability) that scores 1.
    pub score_nats: f64,
    /// Score at which an alert is considered raised.
    pub alert_score: f64,
    /// Points after an alert during which scores are damped.
    pub suppress_points: u32,
    /// Factor applied to scores while damped.
    pub suppress_factor: f64,
    /// Score from which the damping starts (the alert level; starting it
    /// just under the threshold NAB happens to choose scores higher there,
    /// but ties the detector to that threshold).
    pub suppress_from: f64,
    /// Power of the less surprised model's tail probability that
    /// multiplies the verdict (0: the rarer model's alone), so a point
    /// both models find unusual counts more than one only one does.
    pub agree_weight: f64,
    /// Separate time-of-day profiles for weekdays and weekends (UTC days).
    pub weekly: bool,
    /// Scores at or above this get an explanation built.
    pub explain_above: f64,
    /// Half-width of the reported expected range, in units of the spread.
    pub range_width: f64,
    /// Deviation (in error units) that counts as a spike for the spike rate.
    pub spike_z: f64,
    /// How strongly a learnt spike rate softens single-point evidence (0: off).
    pub spike_k: f64,
    /// Weight of one point in the shift check's level (0: no shift check).
    pub shift_alpha: f64,
    /// Largest move one point makes in the shift check's level, in units
    /// of the long-run robust spread, so lone spikes barely move it.
    pub shift_clip: f64,
    /// Smallest shift (in long-run robust spreads) the shift check reports.
    pub shift_min: f64,
    /// Points a shift (or a noise ratio) waits before its history learns
    /// it (0 to 32), so an excursion is judged against the history from
    /// before it.
    pub shift_delay: u32,
    /// Weight of one point in the noise check's recent mean of changes
    /// (0: no noise check).
    pub noise_alpha: f64,
    /// Largest change one point adds to that mean, in long-run mean changes.
    pub noise_clip: f64,
    /// Smallest ratio of recent to long-run changes the noise check reports.
    pub noise_min: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            warmup_points: 50,
            quiet_points: 150,
            fast_alpha: 0.1,
            slow_alpha: 0.005,
            spread_floor: 0.1,
            clip: 3.0,
            err_clip: 20.0,
            season_day_alpha: 0.3,
            season_bin_share: 0.5,
            long_alpha: 0.0005,
            channel_warmup: 100,
            run_alpha: 0.15,
            prior_weight: 1.0,
            prior_gamma: 4.0,
            tail_gamma: 4.0,
            tail_share: 0.1,
            score_nats: 23.0,
            alert_score: 0.25,
            suppress_points: 100,
            suppress_factor: 0.2,
            suppress_from: 0.25,
            agree_weight: 0.1,
            weekly: true,
            explain_above: 0.25,
            range_width: 3.0,
            spike_z: 6.0,
            spike_k: 10.0,
            shift_alpha: 0.2,
            shift_clip: 2.0,
            shift_min: 3.0,
            shift_delay: 32,
            noise_alpha: 0.03,
            noise_clip: 4.0,
            noise_min: 1.5,
        }
    }
}

/// Which model the expectation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Still learning: too few points to judge.
    Learning,
    /// The recent level of the series.
    RecentLevel,
    /// The usual value at this time of day.
    TimeOfDay,
}

/// The verdict on one point.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Anomaly score in [0, 1]; comparable across series.
    pub score: f64,
    /// Low end of the expected range.
    pub expected_low: f64,
    /// High end of the expected range.
    pub expected_high: f64,
    /// The value seen.
    pub observed: f64,
    /// What the expectation was based on.
    pub basis: Basis,
    /// A sentence for people; empty unless the score reached
    /// `DetectorConfig::explain_above` (see [`Assessment::describe`]).
    pub explanation: String,
}

impl Assessment {
    /// The human explanation, built now whatever the score.
    pub fn describe(&self) -> String {
        let basis = match self.basis {
            Basis::Learning => {
                return format!(
                    "observed {}; still learning this series",
                    fmt(self.observed)
                )
            }
            Basis::RecentLevel => "recent level",
            Basis::TimeOfDay => "usual for this time of day",
        };
        let side = if self.observed > self.expected_high {
            "above"
        } else if self.observed < self.expected_low {
            "below"
        } else {
            "within"
        };
        format!(
            "observed {} {side} the expected range {} to {} ({basis}); anomaly score {:.2}",
            fmt(self.observed),
            fmt(self.expected_low),
            fmt(self.expected_high),
            self.score
        )
    }
}

fn fmt(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{:.4}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// One model's history of surprises: how often deviations of each size
/// were seen, point by point and as short runs.
#[derive(Debug, Clone)]
struct Channel {
    point: TailHistogram,
    /// Short-term mean of ln(1 + z): a run of moderate deviations.
    run_ln: f32,
    run: TailHistogram,
    /// Long-run share of points deviating by more than `spike_z`.
    spike_rate: f32,
    /// Points judged; the first `channel_warmup` only teach.
    n: u32,
}

impl Channel {
    fn new() -> Self {
        Channel {
            point: TailHistogram::new(),
            run_ln: 0.0,
            run: TailHistogram::new(),
            spike_rate: 0.0,
            n: 0,
        }
    }

    /// The tail probability of deviation `z` (the rarer of the point and
    /// the run, doubled for looking at two), then learns it; 1 while the
    /// channel is still learning.
    #[inline]
    fn judge(&mut self, z: f64, c: &DetectorConfig) -> f64 {
        let log2_z = if z > 0.0 { z.log2() } else { -64.0 };
        let p_point = self.point.observe(
            log2_z,
            c.prior_weight,
            c.prior_gamma,
            c.tail_gamma,
            c.tail_share,
            c.long_alpha,
        );
        let run_ln = self.run_ln as f64 + c.run_alpha * (z.ln_1p() - self.run_ln as f64);
        self.run_ln = run_ln as f32;
        let log2_run = run_ln * std::f64::consts::LOG2_E;
        let p_run = self.run.observe(
            log2_run,
            c.prior_weight,
            c.prior_gamma,
            c.tail_gamma,
            c.tail_share,
            c.long_alpha,
        );
        // In a series that spikes often, a lone spike is weaker evidence:
        // its surprise is scaled down by the learnt spike rate.
        let p_point = if c.spike_k > 0.0 {
            p_point.powf(1.0 / (1.0 + c.spike_k * self.spike_rate as f64))
        } else {
            p_point
        };
        let hit = if z > c.spike_z { 1.0 } else { 0.0 };
        let a = c.long_alpha.max(1.0 / (self.n as f64 + 1.0)) as f32;
        self.spike_rate += a * (hit - self.spike_rate);
        self.n = self.n.saturating_add(1);
        if self.n <= c.channel_warmup {
            return 1.0;
        }
        2.0 * p_point.min(p_run)
    }
}

/// Online anomaly detector for one series. Causal: the score of a point
/// depends only on that point and those before it.
#[derive(Debug, Clone)]
pub struct Detector {
    /// Shared by every detector made from one configuration.
    cfg: Arc<DetectorConfig>,
    n: u32,
    last_t: i64,
    /// Typical interval between points, in ms.
    dt: f32,
    /// Recent level: the level model's prediction.
    fast: RobustEw,
    /// Long-run location and spread of the values, for scale floors.
    slow: RobustEw,
    /// Mean absolute deviation of the values from `slow.loc`, outliers included.
    spread: f32,
    /// Mean absolute error of each model.
    err_level: f32,
    err_season: f32,
    profile: DailyProfile<DAY_BINS>,
    weekend: DailyProfile<WEEKEND_BINS>,
    /// Surprise histories of the recent-level and time-of-day models.
    level_ch: Channel,
    season_ch: Channel,
    /// The shift check's level: a mean of recent values whose steps are
    /// tightly clipped, so it follows sustained shifts, not spikes.
    shift_level: f64,
    /// History of shifts (`shift_level` against the long-run level, in
    /// long-run robust spreads).
    shift_hist: TailHistogram<SHIFT_BINS>,
    /// Shift bins waiting to be learnt.
    shift_delay: NibbleDelay,
    /// Points left in the damping period after an alert.
    suppress: u32,
    /// The noise check: the previous value, the recent and long-run means
    /// of the changes between points, the history of their ratio, and the
    /// ratios waiting to be learnt.
    prev_x: f64,
    noise_fast: f32,
    noise_slow: f32,
    noise_hist: TailHistogram<NOISE_BINS>,
    noise_delay: NibbleDelay,
}

impl Detector {
    pub fn new(cfg: DetectorConfig) -> Self {
        Self::shared(Arc::new(cfg))
    }

    /// A detector using a configuration shared with others, so each series
    /// pays only its own state.
    pub fn shared(cfg: Arc<DetectorConfig>) -> Self {
        Detector {
            cfg,
            n: 0,
            last_t: 0,
            dt: 0.0,
            fast: RobustEw::new(),
            slow: RobustEw::new(),
            spread: 0.0,
            err_level: 0.0,
            err_season: 0.0,
            profile: DailyProfile::new(),
            weekend: DailyProfile::new(),
            level_ch: Channel::new(),
            season_ch: Channel::new(),
            shift_level: 0.0,
            shift_hist: TailHistogram::new(),
            shift_delay: NibbleDelay::new(),
            suppress: 0,
            prev_x: 0.0,
            noise_fast: 0.0,
            noise_slow: 0.0,
            noise_hist: TailHistogram::new(),
            noise_delay: NibbleDelay::new(),
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Points learnt so far (non-finite values are not counted).
    pub fn points(&self) -> u32 {
        self.n
    }

    /// Scores the point `(t_ms, value)` and learns from it. Points should
    /// come in time order; a non-finite value, or one beyond ±1e30 (spreads
    /// are kept as `f32`, and one such value would overflow them for good),
    /// is ignored and scored 0.
    pub fn update(&mut self, t_ms: i64, value: f64) -> Assessment {
        let x = value;
        if !x.is_finite() || x.abs() > MAX_VALUE {
            return self.assessment(0.0, x, x, x, Basis::Learning);
        }
        let c = &self.cfg;
        self.n = self.n.saturating_add(1);
        if self.n > 1 {
            let dt = (t_ms - self.last_t) as f64;
            if dt > 0.0 {
                let old = self.dt as f64;
                self.dt = if old == 0.0 {
                    dt
                } else {
                    old + 0.05 * (dt - old)
                } as f32;
            }
        }
        self.last_t = t_ms;
        // The smallest spread worth measuring deviations in: a sliver of the
        // level and of the overall spread, so constant stretches between
        // spikes do not make every spike infinitely surprising.
        let floor = if self.n == 1 {
            1e-3 * x.abs() + 1e-12
        } else {
            1e-3 * self.slow.loc.abs() + c.spread_floor * self.spread as f64 + 1e-12
        };
        if self.n > 1 {
            let a = c.slow_alpha.max(1.0 / self.n as f64);
            let sp = self.spread as f64;
            self.spread = (sp + a * ((x - self.slow.loc).abs() - sp)) as f32;
        }

        // What each model expected, before it learns this point.
        let pred_level = if self.n == 1 { x } else { self.fast.loc };
        let phase = DailyProfile::<DAY_BINS>::phase(t_ms);
        let we_phase = DailyProfile::<WEEKEND_BINS>::phase(t_ms);
        let dow = (t_ms.div_euclid(86_400_000) + 4).rem_euclid(7);
        let is_we = c.weekly && (dow == 0 || dow == 6);
        let use_we = is_we && self.weekend.ready(t_ms);
        let season_ready = self.profile.ready(t_ms);
        let (pred_season, bin_mad) = if use_we {
            self.weekend.expect(we_phase)
        } else {
            self.profile.expect(phase)
        };
        let (err_level, err_season) = (self.err_level as f64, self.err_season as f64);
        let scale_level = err_level.max(floor);
        let z_level = (x - pred_level).abs() / scale_level;
        let scale_season = bin_mad.max(c.season_bin_share * err_season).max(floor);
        let z_season = (x - pred_season).abs() / scale_season;

        // Learn.
        let e_level = (x - pred_level).abs();
        let e_season = (x - pred_season).abs();
        if self.n > 1 {
            let a = c.slow_alpha.max(1.0 / self.n as f64);
            let lim_l = c.err_clip * err_level.max(floor);
            self.err_level = (err_level + a * (e_level.min(lim_l) - err_level)) as f32;
            if season_ready {
                let lim_s = c.err_clip * err_season.max(floor);
                self.err_season =
                    (err_season + c.slow_alpha * (e_season.min(lim_s) - err_season)) as f32;
            } else {
                self.err_season = self.err_level;
            }
        }
        // The long-run level and robust spread, before this point.
        let (base, base_mad) = (self.slow.loc, (self.slow.mad as f64).max(floor));
        self.fast.update(x, c.fast_alpha, c.clip, floor);
        self.slow.update(x, c.slow_alpha, c.clip, floor);
        if self.n == 1 {
            self.shift_level = x;
        } else {
            let lim = c.shift_clip * base_mad;
            self.shift_level += c.shift_alpha * (x - self.shift_level).clamp(-lim, lim);
        }
        // Each profile's rate is per day, whatever the number of points
        // that fall in one of its bins.
        if is_we {
            let per_bin = DailyProfile::<WEEKEND_BINS>::points_per_bin(self.dt as f64);
            let a = (c.season_day_alpha / per_bin).min(1.0);
            self.weekend.learn(t_ms, we_phase, x, a, c.clip, floor);
        } else {
            let per_bin = DailyProfile::<DAY_BINS>::points_per_bin(self.dt as f64);
            let a = (c.season_day_alpha / per_bin).min(1.0);
            self.profile.learn(t_ms, phase, x, a, c.clip, floor);
        }

        if self.n <= c.warmup_points {
            self.prev_x = x;
            let half = c.range_width * scale_level;
            return self.assessment(
                0.0,
                pred_level - half,
                pred_level + half,
                x,
                Basis::Learning,
            );
        }

        // Each model's surprise, judged against its own history of surprises.
        let p_level = self.level_ch.judge(z_level, c);
        let p_season = if season_ready {
            self.season_ch.judge(z_season, c)
        } else {
            1.0
        };
        // A sustained shift of the level, against the long-run level:
        // judged against the history of shifts (learnt with a delay, so the
        // first points of an excursion do not teach that it is usual), and
        // only once it is several long-run spreads large.
        let mut p_shift = 1.0;
        if c.shift_alpha > 0.0 {
            let u = (self.shift_level - base).abs() / base_mad;
            let log2_u = if u > 0.0 { u.log2() } else { -64.0 };
            let k = TailHistogram::<SHIFT_BINS>::bin(log2_u);
            if self.n > c.warmup_points + c.channel_warmup && u >= c.shift_min {
                p_shift = self.shift_hist.tail(
                    log2_u,
                    c.prior_weight,
                    c.prior_gamma,
                    c.tail_gamma,
                    c.tail_share,
                );
            }
            if let Some(old) = self.shift_delay.push(k as u8, c.shift_delay) {
                self.shift_hist.learn(old as usize, c.long_alpha);
            }
        }
        // A series getting noisier: the recent mean of its changes between
        // points (each clipped, so lone spikes barely move it) against the
        // long-run mean, judged like the shifts, against a history learnt
        // late, and only once it is clearly larger.
        if c.noise_alpha > 0.0 {
            let d = (x - self.prev_x).abs();
            let fl = 0.1 * floor;
            if self.n == c.warmup_points + 1 {
                self.noise_slow = d.max(fl) as f32;
                self.noise_fast = self.noise_slow;
            }
            let (fast, slow) = (self.noise_fast as f64, self.noise_slow as f64);
            let r = fast / slow.max(fl);
            let lim = slow.max(fl);
            self.noise_fast = (fast + c.noise_alpha * (d.min(c.noise_clip * lim) - fast)) as f32;
            let a = c.slow_alpha.max(1.0 / (self.n - c.warmup_points) as f64);
            self.noise_slow = (slow + a * (d.min(c.err_clip * lim) - slow)) as f32;
            let log2_r = if r > 0.0 { r.log2() } else { -64.0 };
            let k = TailHistogram::<NOISE_BINS>::bin(log2_r);
            if self.n > c.warmup_points + c.channel_warmup && r >= c.noise_min {
                let p = self.noise_hist.tail(
                    log2_r,
                    c.prior_weight,
                    c.prior_gamma,
                    c.tail_gamma,
                    c.tail_share,
                );
                p_shift = p_shift.min(p);
            }
            if let Some(old) = self.noise_delay.push(k as u8, c.shift_delay) {
                self.noise_hist.learn(old as usize, c.long_alpha);
            }
        }
        self.prev_x = x;
        // Reported against the model that found the point rarer; on a tie,
        // the one that has predicted better.
        let season_first =
            p_season < p_level || (p_season == p_level && self.err_season < self.err_level);
        let (p, pred, scale, basis) = if season_first {
            (p_season, pred_season, scale_season, Basis::TimeOfDay)
        } else {
            (p_level, pred_level, scale_level, Basis::RecentLevel)
        };
        // Both models surprised: the less surprised one strengthens the verdict.
        let p = if c.agree_weight > 0.0 && season_ready {
            p * p_season.max(p_level).min(1.0).powf(c.agree_weight)
        } else {
            p
        };
        let p = p.min(p_shift);
        // Two models looked: the rarer verdict counts twice as likely.
        let p = if season_ready { 2.0 * p } else { p };
        let mut score = (-p.ln() / c.score_nats).clamp(0.0, 1.0);

        if self.n <= c.quiet_points {
            score = 0.0;
        } else if self.suppress > 0 {
            self.suppress -= 1;
            score *= c.suppress_factor;
        } else if score >= c.suppress_from.min(c.alert_score) {
            self.suppress = c.suppress_points;
        }
        let half = c.range_width * scale;
        self.assessment(score, pred - half, pred + half, x, basis)
    }

    fn assessment(&self, score: f64, lo: f64, hi: f64, x: f64, basis: Basis) -> Assessment {
        let mut a = Assessment {
            score,
            expected_low: lo,
            expected_high: hi,
            observed: x,
            basis,
            explanation: String::new(),
        };
        if score >= self.cfg.explain_above {
            a.explanation = a.describe();
        }
        a
    }
}
