//! Running a scenario. The files, from the bottom up (each imports only those above it):
//!
//! - `keys`, `progress`, `summary`, `options`: cache keys, progress display, the run summary,
//!   where and how a run writes;
//! - `methods` (the method registry) and `scenario` (parsing, `--set`, validation);
//! - `folders`: the run folders of every stage and what each keeps;
//! - `stages`: the shared stages of a seed (SFT, preference data, reward model, reference);
//! - `run` (a method run's context and evaluation callback), `train` (one arm per kind of
//!   method), `method_stage` (a method's stage and Best-of-N's), `shared` (a seed's shared
//!   stages in order);
//! - `cells` (pending cells, run here or as child processes), `ledger` (what runs cost);
//! - `calibrate`, `tune`, `sweep`, and `protocol` on top: tune -> calibrate -> sweep ->
//!   top-ups -> ledger;
//! - `export` and `tabular`: the Hugging Face export and the tabular world's convergence.
//!
//! `runs/<scenario>/<hash>/` holds checkpoints and logs of a stage; `results/<scenario>/` holds
//! the resolved scenario and the CSV outputs.

pub mod calibrate;
pub mod cells;
pub mod eval_policy;
pub mod export;
pub mod export_files;
pub mod export_rm;
pub mod export_shifted;
pub mod folders;
pub mod keys;
pub mod ledger;
pub mod method_stage;
pub mod methods;
pub mod options;
pub mod progress;
pub mod protocol;
pub mod run;
pub mod scenario;
pub mod shared;
pub mod stages;
pub mod summary;
pub mod sweep;
pub mod tabular;
pub mod train;
pub mod tune;

pub use crate::log::{write_atomic, Metrics, Row};
pub use cells::{pending_cells, run_cell, run_tables, RunsDone};
pub use folders::set_refuse_corrupt;
pub use ledger::{compute_totals, run_work, Ledger, RunsWork};
pub use options::RunOptions;
pub use progress::ProgressMode;
pub use protocol::run as run_scenario;
pub use shared::{build_world, prepare, show_world};
pub use summary::{NumberRecord, Summary, SummaryRecord};
pub use sweep::{run, TopUp};
