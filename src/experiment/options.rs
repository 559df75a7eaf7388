//! Where a run writes, on what device, with how many jobs and threads.

use std::path::PathBuf;
use tch::Device;

use super::progress::ProgressMode;
use super::scenario::Override;

#[derive(Clone)]
pub struct RunOptions {
    pub results_root: PathBuf,
    pub runs_root: PathBuf,
    pub device: Device,
    /// How training progress is shown (see [`ProgressMode`]).
    pub progress: ProgressMode,
    /// Method runs at a time, as child processes (1: in this process).
    pub jobs: usize,
    /// Torch threads in all (divided among the jobs).
    pub threads: usize,
    /// Arguments that make `alignlab cell` see the same scenario: file, --set, --device, --runs.
    pub cell_args: Vec<String>,
}

impl RunOptions {
    /// The same options with `overrides` appended to the cells' command line (settings fixed
    /// by the tuning or the calibration, or a pilot's grids), as `--set` arguments: the one
    /// place a typed override becomes text, at the boundary of a child process.
    pub fn with_overrides(&self, overrides: &[Override]) -> RunOptions {
        let mut o = self.clone();
        for ov in overrides {
            o.cell_args.extend(["--set".to_string(), ov.to_arg()]);
        }
        o
    }

    /// Torch threads each method run gets: the threads divided among the jobs.
    pub fn threads_per_run(&self) -> usize {
        (self.threads / self.jobs.max(1)).max(1)
    }
}

impl RunOptions {
    /// A process that runs one seed's stages or one cell itself (`prepare`, `cell`, `cells`):
    /// results under `results/`, one job with every torch thread, no child processes.
    pub fn local(runs_root: PathBuf, device: Device, progress: ProgressMode) -> RunOptions {
        RunOptions {
            results_root: PathBuf::from("results"),
            runs_root,
            device,
            progress,
            jobs: 1,
            threads: tch::get_num_threads() as usize,
            cell_args: vec![],
        }
    }
}
