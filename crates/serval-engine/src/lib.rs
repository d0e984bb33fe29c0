//! serval-engine
