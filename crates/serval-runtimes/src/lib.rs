//! serval-runtimes
