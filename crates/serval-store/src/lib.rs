//! serval-store
