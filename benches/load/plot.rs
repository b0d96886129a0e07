//! The curves: `docs/bench-curves.svg`, p50/p99 poll lateness and resident memory per channel
//! against N, from every idle (R = 0), successful JSON result in `target/bench-results/`.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::report::{Results, results_dir};

pub(crate) fn plot() -> anyhow::Result<PathBuf> {
    use plotters::prelude::*;
    let mut runs: Vec<Results> = Vec::new();
    for entry in std::fs::read_dir(results_dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json")
            && let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(r) = serde_json::from_str::<Results>(&text)
            && r.failures.is_empty()
            && r.args.messages_per_sec == 0
        {
            runs.push(r);
        }
    }
    if runs.is_empty() {
        bail!(
            "no idle (R = 0) results in {} to plot",
            results_dir().display()
        );
    }
    runs.sort_by_key(|r| r.channels);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bench-curves.svg");
    let root = SVGBackend::new(&out, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let max_n = runs.iter().map(|r| r.channels).max().unwrap_or(1) as f64 * 1.5;
    let min_n = runs.iter().map(|r| r.channels).min().unwrap_or(1).max(1) as f64 / 1.5;
    let series = |f: &dyn Fn(&Results) -> f64| -> Vec<(f64, f64)> {
        runs.iter().map(|r| (r.channels as f64, f(r))).collect()
    };
    type Points = Vec<(f64, f64)>;
    type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
    let panels: [(&Area, &str, &str, Points, Points, f64); 2] = [
        (
            &left,
            "Poll lateness vs channels",
            "ms",
            series(&|r| r.lateness_ms.p99),
            series(&|r| r.lateness_ms.p50),
            1000.0,
        ),
        (
            &right,
            "Resident memory per channel",
            "bytes",
            series(&|r| r.rss_per_channel_bytes),
            Vec::new(),
            8192.0,
        ),
    ];
    for (area, title, unit, main, second, budget) in panels {
        let measured_top = main
            .iter()
            .chain(second.iter())
            .map(|p| p.1)
            .fold(0.0, f64::max);
        // A budget far above every point would flatten them onto the axis: leave it off the chart.
        let show_budget = budget <= measured_top * 3.0;
        let top = if show_budget {
            budget.max(measured_top)
        } else {
            measured_top.max(f64::MIN_POSITIVE)
        } * 1.15;
        let title = if show_budget {
            title.to_owned()
        } else {
            format!("{title} (budget {budget} {unit}, far above)")
        };
        let mut chart = ChartBuilder::on(area)
            .caption(&title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d((min_n..max_n).log_scale(), 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("channels")
            .y_desc(unit)
            .draw()?;
        chart
            .draw_series(LineSeries::new(main.clone(), &BLUE))?
            .label(if second.is_empty() { "measured" } else { "p99" })
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE));
        chart.draw_series(PointSeries::of_element(main, 4, &BLUE, &|c, s, st| {
            Circle::new(c, s, st.filled())
        }))?;
        if !second.is_empty() {
            chart
                .draw_series(LineSeries::new(second.clone(), &GREEN))?
                .label("p50")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], GREEN));
            chart.draw_series(PointSeries::of_element(second, 4, &GREEN, &|c, s, st| {
                Circle::new(c, s, st.filled())
            }))?;
        }
        if show_budget {
            chart
                .draw_series(LineSeries::new(
                    vec![(min_n, budget), (max_n, budget)],
                    &RED,
                ))?
                .label("budget")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
    }
    root.present()?;
    Ok(out.clone())
}
