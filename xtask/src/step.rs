//! What a bootstrap step reports. A module of its own so that `bootstrap` (which runs and reports
//! the steps) and the modules that implement steps (`apt`) share it without importing each other.

/// How one bootstrap step ended.
pub enum Step {
    /// Nothing to do; the text names what is present.
    Present(String),
    /// The step changed the machine; the text says how.
    Done(String),
    /// Could not be done without root; the text says what is missing and how to fix it.
    Missing(String),
}
