//! Progress bars on stderr, one style for every long loop (encoding, training epochs, evaluation).
//!
//! A leaf module: anything may show progress without importing what reports results.

use indicatif::{ProgressBar, ProgressStyle};

/// `{label} [bar] pos/len [elapsed<eta] {msg}`; indicatif hides it when stderr is not a terminal.
pub(crate) fn progress_bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .expect("static template"),
    );
    bar.set_prefix(label.to_string());
    bar
}
