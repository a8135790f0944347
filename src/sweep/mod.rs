//! Sweeps: a set of cells (configs × grid points × seeds, `cells`) run one after another here, one cell by
//! index (an array task), or submitted as a Slurm job array (`slurm`), and watched (`--list`, `--status`,
//! `--cancel`, `--compare`). A sweep's own files live in `<output_dir>/<sweep>/`; each cell is an ordinary
//! run, so only `run::run_dir` touches a cell's paths. Imports `run`, `analysis` and the layers below.

pub(crate) mod cells;
mod execute;
pub(crate) mod slurm;

pub(crate) use execute::*;
