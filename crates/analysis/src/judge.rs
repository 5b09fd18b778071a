//! A canary-vs-stable judge in the manner of Kayenta: each metric's canary samples are
//! compared with the stable ones by a two-sided Mann-Whitney U test, classified Pass, High or
//! Low, and the metrics' weighted pass rate is the score (0..100) that decides Pass, Marginal
//! or Fail.
//!
//! The test is the normal approximation with tie correction and continuity correction, which
//! is what `scipy.stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic")`
//! computes; its reported statistic is `U1`, the canary's. A metric deviates when the p-value
//! is below `alpha` *and* the canary's mean differs from the stable mean by more than the
//! metric's relative `tolerance`; High means the canary's values tend to be larger. A
//! deviation only fails the metric in the direction the metric cares about (latency and error
//! indicators: `Increase`).

use crate::phase::Phase;

/// The result of a two-sided Mann-Whitney U test of `x` against `y`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// Size of `x`.
    pub n1: usize,
    /// Size of `y`.
    pub n2: usize,
    /// `U1 = R1 - n1 (n1 + 1) / 2`, with `R1` the sum of `x`'s ranks (scipy's statistic).
    pub u1: f64,
    /// `U2 = n1 n2 - U1`.
    pub u2: f64,
    /// The standardized statistic `(max(U1, U2) - n1 n2 / 2 - 0.5) / sigma` (0 when every
    /// value is tied).
    pub z: f64,
    /// The two-sided p-value, in `[0, 1]`.
    pub p_value: f64,
}

impl MannWhitney {
    /// Whether `x`'s values tend to be larger than `y`'s (`U1 > n1 n2 / 2`).
    pub fn x_larger(&self) -> bool {
        self.u1 > self.u2
    }
}

/// The complementary error function, to about 1e-15 relative accuracy: a positive-term series
/// for `x < 2.5`, a continued fraction beyond.
fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    let two_over_sqrt_pi = std::f64::consts::FRAC_2_SQRT_PI;
    if x < 2.5 {
        // erf(x) = 2/sqrt(pi) e^{-x^2} sum_n 2^n x^{2n+1} / (1*3*...*(2n+1))
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while term > sum * 1e-17 {
            n += 1.0;
            term *= 2.0 * x * x / (2.0 * n + 1.0);
            sum += term;
        }
        1.0 - two_over_sqrt_pi * (-x * x).exp() * sum
    } else {
        // erfc(x) = e^{-x^2}/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
        let mut f = x;
        for k in (1..=200).rev() {
            f = x + (k as f64 / 2.0) / f;
        }
        two_over_sqrt_pi / 2.0 * (-x * x).exp() / f
    }
}

/// The standard normal survival function `P(Z > z)`.
fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Two-sided Mann-Whitney U test (normal approximation, tie and continuity corrections).
/// `None` when either sample is empty or holds a NaN.
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 || x.iter().chain(y).any(|v| v.is_nan()) {
        return None;
    }
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let mut r1 = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && all[j].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their average.
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        r1 += avg_rank * all[i..j].iter().filter(|(_, from_x)| *from_x).count() as f64;
        i = j;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u1 = r1 - n1f * (n1f + 1.0) / 2.0;
    let u2 = n1f * n2f - u1;
    let mu = n1f * n2f / 2.0;
    let variance = n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    let (z, p_value) = if variance > 0.0 {
        let z = (u1.max(u2) - mu - 0.5) / variance.sqrt();
        (z, (2.0 * normal_sf(z)).clamp(0.0, 1.0))
    } else {
        (0.0, 1.0)
    };
    Some(MannWhitney {
        n1,
        n2,
        u1,
        u2,
        z,
        p_value,
    })
}

/// Which deviation of the canary is bad for a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Larger values are bad (latency, errors).
    Increase,
    /// Smaller values are bad (throughput, success).
    Decrease,
    /// Any deviation is bad.
    Either,
}

/// How one metric is judged.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricConfig {
    /// The metric's name (`latency`, `errors`).
    pub name: String,
    /// Which deviation fails it.
    pub direction: Direction,
    /// Relative effect size tolerated even when significant: the metric deviates only if
    /// `|mean(canary) - mean(stable)| > tolerance * |mean(stable)|`.
    pub tolerance: f64,
    /// A critical metric that fails fails the whole judgement (score 0).
    pub critical: bool,
    /// Its weight in the score.
    pub weight: f64,
}

impl MetricConfig {
    /// A metric with a 10% tolerance, weight 1, not critical.
    pub fn new(name: impl Into<String>, direction: Direction) -> MetricConfig {
        MetricConfig {
            name: name.into(),
            direction,
            tolerance: 0.1,
            critical: false,
            weight: 1.0,
        }
    }
}

/// The judge's thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JudgeConfig {
    /// Significance level of the two-sided test (default 0.05).
    pub alpha: f64,
    /// Minimum score to pass (default 95).
    pub pass_score: f64,
    /// Minimum score to be marginal (default 75).
    pub marginal_score: f64,
    /// Fewer samples than this on either side make the metric NoData (default 3).
    pub min_samples: usize,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            alpha: 0.05,
            pass_score: 95.0,
            marginal_score: 75.0,
            min_samples: 3,
        }
    }
}

/// A metric's classification, as Kayenta names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    /// No significant deviation (or one within tolerance).
    Pass,
    /// The canary is significantly higher.
    High,
    /// The canary is significantly lower.
    Low,
    /// Too few samples on a side.
    NoData,
}

/// One metric's judgement.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricJudgement {
    /// The metric's name.
    pub name: String,
    /// Pass / High / Low / NoData.
    pub classification: Classification,
    /// Whether the classification is acceptable given the metric's direction (NoData is not
    /// counted either way).
    pub passed: bool,
    /// The test, when both sides had enough samples.
    pub test: Option<MannWhitney>,
    /// Mean of the canary's samples (NaN when empty).
    pub canary_mean: f64,
    /// Mean of the stable samples (NaN when empty).
    pub stable_mean: f64,
}

/// The overall verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Score >= pass_score.
    Pass,
    /// marginal_score <= score < pass_score.
    Marginal,
    /// Lower score, or a failed critical metric.
    Fail,
    /// No metric had enough samples.
    NoData,
}

impl Verdict {
    /// The measurement phase a judge metric reports: Pass -> Successful, Fail -> Failed,
    /// Marginal and NoData -> Inconclusive.
    pub fn phase(self) -> Phase {
        match self {
            Verdict::Pass => Phase::Successful,
            Verdict::Fail => Phase::Failed,
            Verdict::Marginal | Verdict::NoData => Phase::Inconclusive,
        }
    }
}

/// The judgement of a canary.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// 0..=100: the weighted share of metrics (with data) that passed; 0 when a critical
    /// metric failed or no metric had data.
    pub score: f64,
    /// Pass / Marginal / Fail / NoData.
    pub verdict: Verdict,
    /// Per-metric results, in input order.
    pub metrics: Vec<MetricJudgement>,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Judges one metric's canary samples against its stable samples.
pub fn judge_metric(
    metric: &MetricConfig,
    canary: &[f64],
    stable: &[f64],
    config: &JudgeConfig,
) -> MetricJudgement {
    let (canary_mean, stable_mean) = (mean(canary), mean(stable));
    let enough =
        canary.len() >= config.min_samples.max(1) && stable.len() >= config.min_samples.max(1);
    let test = if enough {
        mann_whitney_u(canary, stable)
    } else {
        None
    };
    let classification = match &test {
        None => Classification::NoData,
        Some(t) => {
            let beyond_tolerance =
                (canary_mean - stable_mean).abs() > metric.tolerance * stable_mean.abs();
            if t.p_value < config.alpha && beyond_tolerance {
                if t.x_larger() {
                    Classification::High
                } else {
                    Classification::Low
                }
            } else {
                Classification::Pass
            }
        }
    };
    let passed = match classification {
        Classification::Pass => true,
        Classification::NoData => false,
        Classification::High => metric.direction == Direction::Decrease,
        Classification::Low => metric.direction == Direction::Increase,
    };
    MetricJudgement {
        name: metric.name.clone(),
        classification,
        passed,
        test,
        canary_mean,
        stable_mean,
    }
}

/// Judges a canary: `samples` holds, per metric, its config, canary samples and stable
/// samples.
pub fn judge(samples: &[(MetricConfig, Vec<f64>, Vec<f64>)], config: &JudgeConfig) -> Judgement {
    let mut total = 0.0;
    let mut passed = 0.0;
    let mut critical_failed = false;
    let mut metrics = Vec::with_capacity(samples.len());
    for (metric, canary, stable) in samples {
        let j = judge_metric(metric, canary, stable, config);
        if j.classification != Classification::NoData {
            total += metric.weight;
            if j.passed {
                passed += metric.weight;
            } else if metric.critical {
                critical_failed = true;
            }
        }
        metrics.push(j);
    }
    let (score, verdict) = if total <= 0.0 {
        (0.0, Verdict::NoData)
    } else if critical_failed {
        (0.0, Verdict::Fail)
    } else {
        let score = 100.0 * passed / total;
        let verdict = if score >= config.pass_score {
            Verdict::Pass
        } else if score >= config.marginal_score {
            Verdict::Marginal
        } else {
            Verdict::Fail
        };
        (score, verdict)
    };
    Judgement {
        score,
        verdict,
        metrics,
    }
}

/// Error indicators for `total` requests of which `errors` failed: `errors` ones and
/// `total - errors` zeros, the samples the judge compares for error rates.
pub fn error_indicators(errors: u64, total: u64) -> Vec<f64> {
    let errors = errors.min(total);
    let mut v = vec![0.0; (total - errors) as usize];
    v.resize(total as usize, 1.0);
    v
}

#[cfg(test)]
// Table tests spell out their row tuples.
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1e-300) || (a - b).abs() < 1e-15
    }

    /// Reference values from SciPy 1.17.1:
    /// `scipy.stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic")`,
    /// statistic (= U1) and pvalue pasted verbatim.
    #[test]
    fn mann_whitney_matches_scipy() {
        let latency_canary: Vec<f64> = (0..30).map(|i| f64::from(100 + (i * 37) % 50)).collect();
        let latency_stable: Vec<f64> = (0..30).map(|i| f64::from(80 + (i * 23) % 40)).collect();
        let cases: Vec<(&str, Vec<f64>, Vec<f64>, f64, f64)> = vec![
            (
                "separated",
                vec![1., 2., 3., 4., 5.],
                vec![6., 7., 8., 9., 10.],
                0.0,
                0.012185780355344813,
            ),
            (
                "textbook",
                vec![19., 22., 16., 29., 24.],
                vec![20., 11., 17., 12.],
                17.0,
                0.11134688653314041,
            ),
            (
                "ties",
                vec![12.1, 14.3, 11.8, 15.0, 13.3, 12.1, 16.2, 14.3],
                vec![10.2, 11.1, 10.9, 12.1, 9.8, 10.5, 11.0],
                54.0,
                0.0030335779315015434,
            ),
            (
                "errors",
                error_indicators(5, 100),
                error_indicators(1, 100),
                5200.0,
                0.09899034302740754,
            ),
            (
                "overlap",
                vec![3.1, 2.4, 5.6, 4.4, 3.9, 4.0, 2.2, 5.1, 3.3, 4.8],
                vec![3.0, 2.9, 4.1, 3.7, 2.5, 4.6, 3.2, 3.8, 2.8, 4.2, 3.5],
                68.0,
                0.3787382518865303,
            ),
            (
                "latency_bad",
                latency_canary,
                latency_stable,
                816.0,
                6.50045180425783e-08,
            ),
        ];
        for (name, x, y, u1, p) in cases {
            let got = mann_whitney_u(&x, &y).unwrap();
            assert_eq!(got.u1, u1, "{name}: U1");
            assert_eq!(got.u2, (x.len() * y.len()) as f64 - u1, "{name}: U2");
            assert!(
                close(got.p_value, p),
                "{name}: p {} vs scipy {p}",
                got.p_value
            );
        }
    }

    #[test]
    fn mann_whitney_hand_computed_u() {
        // x = [1, 3, 5], y = [2, 4]: ranks of x are 1, 3, 5 -> R1 = 9, U1 = 9 - 6 = 3, U2 = 3.
        let got = mann_whitney_u(&[1., 3., 5.], &[2., 4.]).unwrap();
        assert_eq!((got.u1, got.u2), (3.0, 3.0));
        // Symmetric: z = -0.5/sigma, p clipped to 1.
        assert_eq!(got.p_value, 1.0);
        // Ties: x = [1, 2, 2], y = [2, 3]: 2s share rank 3 -> R1 = 1 + 3 + 3 = 7, U1 = 1.
        let got = mann_whitney_u(&[1., 2., 2.], &[2., 3.]).unwrap();
        assert_eq!(got.u1, 1.0);
    }

    #[test]
    fn mann_whitney_degenerate() {
        assert_eq!(mann_whitney_u(&[], &[1.0]), None);
        assert_eq!(mann_whitney_u(&[f64::NAN], &[1.0]), None);
        let all_tied = mann_whitney_u(&[1.0; 4], &[1.0; 5]).unwrap();
        assert_eq!((all_tied.u1, all_tied.p_value), (10.0, 1.0));
    }

    #[test]
    fn erfc_reference_values() {
        // erfc values from Python's math.erfc.
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (2.0, 0.004677734981047265),
            (2.5, 0.0004069520174449589),
            (3.0, 2.2090496998585438e-05),
            (5.0, 1.5374597944280351e-12),
            (-1.0, 1.842700792949715),
        ] {
            assert!(close(erfc(x), want), "erfc({x}) = {} want {want}", erfc(x));
        }
    }

    fn latency(base: f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| base + ((i * 37) % 50) as f64).collect()
    }

    #[test]
    fn classification_table() {
        let config = JudgeConfig::default();
        let up = MetricConfig::new("latency", Direction::Increase);
        let down = MetricConfig::new("throughput", Direction::Decrease);
        let either = MetricConfig::new("x", Direction::Either);
        let loose = MetricConfig {
            tolerance: 0.5,
            ..MetricConfig::new("latency", Direction::Increase)
        };
        let cases: Vec<(
            &str,
            &MetricConfig,
            Vec<f64>,
            Vec<f64>,
            Classification,
            bool,
        )> = vec![
            (
                "same distribution",
                &up,
                latency(100.0, 40),
                latency(100.0, 40),
                Classification::Pass,
                true,
            ),
            (
                "canary slower",
                &up,
                latency(200.0, 40),
                latency(100.0, 40),
                Classification::High,
                false,
            ),
            (
                "canary faster is fine for latency",
                &up,
                latency(50.0, 40),
                latency(100.0, 40),
                Classification::Low,
                true,
            ),
            (
                "lower throughput is bad",
                &down,
                latency(50.0, 40),
                latency(100.0, 40),
                Classification::Low,
                false,
            ),
            (
                "either direction",
                &either,
                latency(50.0, 40),
                latency(100.0, 40),
                Classification::Low,
                false,
            ),
            (
                "significant but within tolerance",
                &loose,
                latency(160.0, 40),
                latency(125.0, 40),
                Classification::Pass,
                true,
            ),
            (
                "too few samples",
                &up,
                vec![1.0, 2.0],
                latency(100.0, 40),
                Classification::NoData,
                false,
            ),
            (
                "error rate up",
                &up,
                error_indicators(30, 200),
                error_indicators(1, 200),
                Classification::High,
                false,
            ),
            (
                "error rate equal",
                &up,
                error_indicators(2, 200),
                error_indicators(2, 200),
                Classification::Pass,
                true,
            ),
        ];
        for (name, metric, canary, stable, want, passed) in cases {
            let got = judge_metric(metric, &canary, &stable, &config);
            assert_eq!(got.classification, want, "{name}");
            assert_eq!(got.passed, passed, "{name}");
            if name == "significant but within tolerance" {
                // SciPy: U1 = 1519.5, p = 4.547569552865149e-12.
                let test = got.test.unwrap();
                assert_eq!(test.u1, 1519.5);
                assert!(
                    close(test.p_value, 4.547569552865149e-12),
                    "{}",
                    test.p_value
                );
            }
        }
    }

    #[test]
    fn score_and_verdict() {
        let config = JudgeConfig::default();
        let good = || (latency(100.0, 40), latency(100.0, 40));
        let bad = || (latency(300.0, 40), latency(100.0, 40));
        let metric = |name: &str| MetricConfig::new(name, Direction::Increase);
        let with = |specs: Vec<(MetricConfig, (Vec<f64>, Vec<f64>))>| {
            specs
                .into_iter()
                .map(|(m, (c, s))| (m, c, s))
                .collect::<Vec<_>>()
        };

        let all_good = judge(
            &with(vec![(metric("a"), good()), (metric("b"), good())]),
            &config,
        );
        assert_eq!((all_good.score, all_good.verdict), (100.0, Verdict::Pass));
        assert_eq!(all_good.verdict.phase(), Phase::Successful);

        // 4 of 5 pass: 80 -> Marginal.
        let mut specs: Vec<_> = (0..4).map(|i| (metric(&format!("m{i}")), good())).collect();
        specs.push((metric("bad"), bad()));
        let marginal = judge(&with(specs), &config);
        assert_eq!(
            (marginal.score, marginal.verdict),
            (80.0, Verdict::Marginal)
        );
        assert_eq!(marginal.verdict.phase(), Phase::Inconclusive);

        let half = judge(
            &with(vec![(metric("a"), good()), (metric("b"), bad())]),
            &config,
        );
        assert_eq!((half.score, half.verdict), (50.0, Verdict::Fail));
        assert_eq!(half.verdict.phase(), Phase::Failed);

        // Weights.
        let heavy = MetricConfig {
            weight: 19.0,
            ..metric("a")
        };
        let weighted = judge(&with(vec![(heavy, good()), (metric("b"), bad())]), &config);
        assert_eq!((weighted.score, weighted.verdict), (95.0, Verdict::Pass));

        // A failed critical metric fails everything.
        let critical = MetricConfig {
            critical: true,
            ..metric("errors")
        };
        let mut specs: Vec<_> = (0..9).map(|i| (metric(&format!("m{i}")), good())).collect();
        specs.push((critical, bad()));
        let crit = judge(&with(specs), &config);
        assert_eq!((crit.score, crit.verdict), (0.0, Verdict::Fail));

        // NoData metrics do not count; with no data at all the verdict is NoData.
        let nodata = judge(
            &with(vec![
                (metric("a"), good()),
                (metric("b"), (vec![], vec![1.0])),
            ]),
            &config,
        );
        assert_eq!((nodata.score, nodata.verdict), (100.0, Verdict::Pass));
        let none = judge(&with(vec![(metric("b"), (vec![], vec![]))]), &config);
        assert_eq!((none.score, none.verdict), (0.0, Verdict::NoData));
    }

    #[test]
    fn error_indicator_samples() {
        assert_eq!(error_indicators(2, 5), vec![0.0, 0.0, 0.0, 1.0, 1.0]);
        assert_eq!(error_indicators(9, 3), vec![1.0; 3]);
    }
}
