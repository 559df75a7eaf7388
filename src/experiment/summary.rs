//! What `alignlab run` prints and writes to `summary.csv` at the end.

/// What `alignlab run` prints and writes at the end.
#[derive(Default)]
pub struct Summary {
    pub rows: Vec<(String, String, String)>,
    /// The per-method table (header first).
    pub table: Vec<Vec<String>>,
    /// Method runs that failed (the others finished).
    pub failed: Vec<String>,
    /// What the report computes with, typed (`numbers.csv`); the rows above are for people.
    pub numbers: Vec<NumberRecord>,
}

impl Summary {
    pub fn add(&mut self, stage: &str, metric: &str, value: String) {
        self.rows.push((stage.into(), metric.into(), value));
    }

    /// A number the report reads: `part` (`invocation`, `run`, `protocol`, `runs:<stage>`,
    /// `reward`, `prefs`), its `quantity` and its value.
    pub fn number(&mut self, part: &str, quantity: &str, value: f64) {
        self.numbers.push(NumberRecord { part: part.into(), quantity: quantity.into(), value });
    }

    pub fn numbers_csv(&self) -> String {
        crate::log::csv_text(&self.numbers)
    }

    pub fn print(&self) {
        let w0 = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(5).max(5);
        let w1 = self.rows.iter().map(|r| r.1.len()).max().unwrap_or(6).max(6);
        println!("{:w0$}  {:w1$}  value", "stage", "metric");
        for (a, b, c) in &self.rows {
            println!("{a:w0$}  {b:w1$}  {c}");
        }
        if !self.table.is_empty() {
            println!();
            let widths: Vec<usize> = (0..self.table[0].len())
                .map(|j| self.table.iter().map(|r| r[j].chars().count()).max().unwrap())
                .collect();
            for row in &self.table {
                let cells: Vec<String> =
                    row.iter().zip(&widths).map(|(c, w)| format!("{c:w$}")).collect();
                println!("{}", cells.join("  ").trim_end());
            }
        }
    }

    pub fn to_csv(&self) -> String {
        let rows: Vec<SummaryRecord> = self
            .rows
            .iter()
            .map(|(stage, metric, value)| SummaryRecord {
                stage: stage.clone(),
                metric: metric.clone(),
                value: value.clone(),
            })
            .collect();
        crate::log::csv_text(&rows)
    }
}

/// One row of `numbers.csv`: a number of the run's summary, typed (see [`Summary::number`]).
/// Reward accuracies and label agreements have one row per seed, in seed order.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct NumberRecord {
    pub part: String,
    pub quantity: String,
    pub value: f64,
}

/// One row of `summary.csv`: a stage, what was measured, and its value as text.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SummaryRecord {
    pub stage: String,
    pub metric: String,
    pub value: String,
}
